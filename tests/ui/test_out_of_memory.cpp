// Running out of GPU memory (issue 6), on a machine without one: the worker and the loader are
// made to throw the c10::Error that CUDA's allocator throws. The window says what happened,
// offers "Retry on CPU" and "Retry at a smaller input size", and taking an offer succeeds. Any
// other CUDA error is reported and the window keeps working.

#include <atomic>

#include <c10/util/Exception.h>

#include <QAction>
#include <QSignalSpy>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/explain_result.h"
#include "fec/ui/inference_worker.h"
#include "fec/ui/main_window.h"
#include "fec/ui/model_session.h"

using namespace fec::ui;

namespace {

[[noreturn]] void throwCudaError(const std::string& message)
{
    // What c10's CUDA caching allocator throws (TORCH_CHECK_WITH(OutOfMemoryError, ...)).
    throw c10::Error(message, "");
}

const char* kOutOfMemory =
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity; 5.91 GiB already allocated)";

QAction* findAction(const QList<QAction*>& actions, const QString& name)
{
    for (auto* a : actions)
        if (a->objectName() == name)
            return a;
    return nullptr;
}

}  // namespace

class TestOutOfMemory : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        FEC_REQUIRE_FIXTURE("inputs/chelsea.png");
        MainWindowOptions options;
        options.useSettings = false;
        options.interactive = false;  // offers stay inspectable: errorActions()
        options.loadDefaults = false;
        m_window = new MainWindow(options);
        m_window->resize(1200, 800);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window));
    }

    void cleanupTestCase()
    {
        InferenceWorker::setFaultForTesting(nullptr);
        ModelSession::setLoadFaultForTesting(nullptr);
        delete m_window;
    }

    void loadOutOfMemoryOffersTheCpu()
    {
        QCOMPARE(m_window->requestedDevice(), QStringLiteral("auto"));
        std::atomic<int> failures{1};
        ModelSession::setLoadFaultForTesting([&failures](const ModelLoadOptions&) {
            if (failures.fetch_sub(1) > 0)
                throwCudaError(kOutOfMemory);
        });
        QSignalSpy errors(m_window, &MainWindow::errorOccurred);
        QSignalSpy loaded(m_window, &MainWindow::modelLoaded);
        m_window->openCheckpoint(fec::test::refPath("tiny_seed0.pth.tar"));
        QVERIFY(errors.wait(30000));
        QVERIFY2(m_window->lastError().contains(QStringLiteral("CUDA out of memory")),
                 qPrintable(m_window->lastError()));
        QVERIFY2(m_window->lastError().contains(QStringLiteral("retry on the CPU")), qPrintable(m_window->lastError()));
        QVERIFY(!m_window->isModelLoaded());
        auto* cpu = findAction(m_window->errorActions(), QStringLiteral("retryOnCpu"));
        QVERIFY(cpu);
        QCOMPARE(cpu->text(), QStringLiteral("Retry on CPU"));
        // Loading has no input size to shrink.
        QVERIFY(!findAction(m_window->errorActions(), QStringLiteral("retrySmaller")));

        cpu->trigger();
        QVERIFY(loaded.wait(30000));
        QCOMPARE(m_window->requestedDevice(), QStringLiteral("cpu"));
        QVERIFY(m_window->isModelLoaded());
        QVERIFY(m_window->lastError().isEmpty());
        QVERIFY(m_window->errorActions().isEmpty());
        ModelSession::setLoadFaultForTesting(nullptr);
    }

    void explainOutOfMemoryOffersCpuAndASmallerInput()
    {
        // Back to "auto" for this session, as a user with a GPU would have it.
        m_window->setSessionOverrides(-1, QString(), QStringLiteral("auto"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isModelLoaded() && m_window->isSettled(), 30000);

        std::atomic<int> failures{1};
        InferenceWorker::setFaultForTesting([&failures](const ExplainRequest&) {
            if (failures.fetch_sub(1) > 0)
                throwCudaError(kOutOfMemory);
        });
        QSignalSpy errors(m_window, &MainWindow::errorOccurred);
        m_window->openImages({fec::test::chelseaPath()});
        QVERIFY(errors.wait(30000));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isSettled(), 30000);
        QVERIFY2(m_window->lastError().contains(QStringLiteral("out of memory")), qPrintable(m_window->lastError()));
        QVERIFY2(m_window->lastError().endsWith(QStringLiteral("retry on the CPU or at a smaller input size.")),
                 qPrintable(m_window->lastError()));
        QVERIFY(!m_window->currentResult());
        auto* cpu = findAction(m_window->errorActions(), QStringLiteral("retryOnCpu"));
        auto* smaller = findAction(m_window->errorActions(), QStringLiteral("retrySmaller"));
        QVERIFY(cpu);
        QVERIFY(smaller);
        // The checkpoint stores no input size: 224 by default, so the offer is 160 (about half the pixels).
        QCOMPARE(smaller->text(), QStringLiteral("Retry at 160 × 160"));

        QSignalSpy loaded(m_window, &MainWindow::modelLoaded);
        cpu->trigger();
        QVERIFY(loaded.wait(30000));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->currentResult() && m_window->isSettled(), 60000);
        QCOMPARE(m_window->requestedDevice(), QStringLiteral("cpu"));
        QVERIFY(m_window->currentResult()->device.startsWith(QStringLiteral("cpu")));
        QCOMPARE(m_window->currentResult()->pyramid.inputH, 224);  // same input: only the device changed
        QVERIFY(m_window->lastError().isEmpty());
        QVERIFY(m_window->errorActions().isEmpty());
        InferenceWorker::setFaultForTesting(nullptr);  // it refers to this function's counter
    }

    void smallerInputRunsAgain()
    {
        // Memory that only suffices below 224: the offered size must fit.
        InferenceWorker::setFaultForTesting([](const ExplainRequest& request) {
            if (request.size == 0 || request.size >= 224)
                throwCudaError(kOutOfMemory);
        });
        QSignalSpy errors(m_window, &MainWindow::errorOccurred);
        m_window->setSessionOverrides(0, QString(), QStringLiteral("cpu"));
        QVERIFY(errors.wait(30000));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isSettled(), 30000);
        // Already on the CPU: only the smaller input is offered.
        QVERIFY(!findAction(m_window->errorActions(), QStringLiteral("retryOnCpu")));
        auto* smaller = findAction(m_window->errorActions(), QStringLiteral("retrySmaller"));
        QVERIFY(smaller);
        smaller->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(m_window->currentResult() && m_window->isSettled(), 60000);
        QCOMPARE(m_window->currentResult()->pyramid.inputH, 160);
        QVERIFY(m_window->lastError().isEmpty());
        InferenceWorker::setFaultForTesting(nullptr);
    }

    void otherCudaErrorsAreReportedAndTheWindowKeepsWorking()
    {
        InferenceWorker::setFaultForTesting(
            [](const ExplainRequest&) { throwCudaError("CUDA error: an illegal memory access was encountered"); });
        QSignalSpy errors(m_window, &MainWindow::errorOccurred);
        m_window->setSessionOverrides(192, QString(), QStringLiteral("cpu"));
        QVERIFY(errors.wait(30000));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isSettled(), 30000);
        QVERIFY2(m_window->lastError().contains(QStringLiteral("illegal memory access")),
                 qPrintable(m_window->lastError()));
        QVERIFY(m_window->errorActions().isEmpty());  // not memory: nothing to offer

        InferenceWorker::setFaultForTesting(nullptr);
        m_window->setSessionOverrides(224, QString(), QStringLiteral("cpu"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->currentResult() && m_window->isSettled(), 60000);
        QCOMPARE(m_window->currentResult()->pyramid.inputH, 224);
        QVERIFY(m_window->lastError().isEmpty());
    }

private:
    MainWindow* m_window = nullptr;
};

QTEST_MAIN(TestOutOfMemory)
#include "test_out_of_memory.moc"
