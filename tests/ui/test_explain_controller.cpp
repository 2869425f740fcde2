// The explain controller without a window: a loaded checkpoint explains the current image, only
// the latest of several quick requests is delivered, an image chosen before the model runs when
// the model arrives, failures name the file and clear the previous result, running out of memory
// comes with what a retry could change, Cancel delivers nothing, and the views out of sight are
// the ones left to redraw.

#include <c10/util/Exception.h>

#include <QImage>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/explain_controller.h"
#include "fec/ui/inference_worker.h"
#include "fec/ui/model_session.h"

using namespace fec::ui;

namespace {

constexpr int kTimeoutMs = 60000;

ExplainSettings cpuSettings()
{
    ExplainSettings settings;
    settings.size = 224;
    settings.preprocess = QStringLiteral("squash");
    settings.device = QStringLiteral("cpu");
    return settings;
}

}  // namespace

class TestExplainController : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        FEC_REQUIRE_FIXTURE("inputs/chelsea.png");
        // Images of different widths, so that results can be told apart.
        QVERIFY(m_dir.isValid());
        QImage chelsea(fec::test::chelseaPath());
        QVERIFY(!chelsea.isNull());
        for (int i = 0; i < 3; ++i) {
            const QString path = m_dir.filePath(QStringLiteral("image%1.png").arg(i));
            QVERIFY(chelsea.copy(i * 40, 0, chelsea.width() - i * 40, chelsea.height()).save(path));
            m_images << path;
        }
    }

    void init()
    {
        m_controller = new ExplainController;
        m_controller->setSettings(cpuSettings());
    }

    void cleanup()
    {
        InferenceWorker::setFaultForTesting(nullptr);
        delete m_controller;
        m_controller = nullptr;
    }

    void explainsTheImage()
    {
        QVERIFY(loadPrimary());
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        QSignalSpy failures(m_controller, &ExplainController::failed);
        QSignalSpy busy(m_controller, &ExplainController::busyChanged);
        QVERIFY(m_controller->explain(fec::test::chelseaPath()));
        QVERIFY(m_controller->isBusy());
        QVERIFY(m_controller->isResultPending());
        QVERIFY(results.wait(kTimeoutMs));
        const auto result = results.first().first().value<ExplainResultPtr>();
        QVERIFY(result);
        QCOMPARE(result->imagePath, fec::test::chelseaPath());
        QCOMPARE(result->modelName, QStringLiteral("tiny_seed0.pth.tar"));
        QCOMPARE(result->image.cols, 451);
        QCOMPARE(result->pyramid.inputH, 224);
        QVERIFY(!result->topClasses.empty());
        QVERIFY(result->device.startsWith(QStringLiteral("cpu")));
        QCOMPARE(m_controller->result(), result);
        QVERIFY(!m_controller->isResultPending());
        QVERIFY(!m_controller->hasFailed());
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
        QTRY_VERIFY_WITH_TIMEOUT(!busy.isEmpty() && !busy.last().first().toBool(), 5000);
        QCOMPARE(busy.first().first().toBool(), true);
        QCOMPARE(failures.size(), 0);
    }

    void theInputSizeIsTheOneAskedFor()
    {
        QVERIFY(loadPrimary());
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        ExplainSettings settings = cpuSettings();
        settings.size = 160;
        m_controller->setSettings(settings);
        m_controller->explain(fec::test::chelseaPath());
        QVERIFY(results.wait(kTimeoutMs));
        QCOMPARE(m_controller->result()->pyramid.inputH, 160);
    }

    void onlyTheLatestRequestIsDelivered()
    {
        QVERIFY(loadPrimary());
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        QSignalSpy failures(m_controller, &ExplainController::failed);
        for (const auto& image : std::as_const(m_images))
            QVERIFY(m_controller->explain(image));
        QCOMPARE(m_controller->image(), m_images.last());
        QVERIFY(results.wait(kTimeoutMs));
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
        QTest::qWait(200);  // anything still queued from the worker thread arrives now
        QCOMPARE(results.size(), 1);
        QCOMPARE(failures.size(), 0);
        const auto result = results.first().first().value<ExplainResultPtr>();
        QCOMPARE(result->imagePath, m_images.last());
        QCOMPARE(result->image.cols, QImage(m_images.last()).width());
        QCOMPARE(m_controller->result(), result);
    }

    void anImageChosenBeforeTheModelRunsWhenItLoads()
    {
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        QVERIFY(!m_controller->explain(m_images.first()));  // nothing to run it with yet
        QVERIFY(!m_controller->isBusy());
        QVERIFY(loadPrimary());
        QVERIFY(results.size() == 1 || results.wait(kTimeoutMs));
        QCOMPARE(m_controller->result()->imagePath, m_images.first());
    }

    void aMissingImageFailsNamingTheFile()
    {
        QVERIFY(loadPrimary());
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        QSignalSpy failures(m_controller, &ExplainController::failed);
        m_controller->explain(fec::test::chelseaPath());
        QVERIFY(results.wait(kTimeoutMs));
        QVERIFY(m_controller->result());

        const QString missing = m_dir.filePath(QStringLiteral("no-such-image.png"));
        m_controller->explain(missing);
        QVERIFY(failures.wait(kTimeoutMs));
        const auto failure = failures.first().first().value<ExplainFailure>();
        QVERIFY2(failure.message.contains(QStringLiteral("no-such-image.png")), qPrintable(failure.message));
        QCOMPARE(failure.image, missing);
        QCOMPARE(failure.model, ModelRole::Primary);
        QVERIFY(!failure.loading);
        QVERIFY(!failure.outOfMemory);
        QVERIFY(!failure.retryOnCpu);
        QCOMPARE(failure.retrySize, 0);
        // The previous image's clusters must not be shown under the failed one.
        QVERIFY(!m_controller->result());
        QVERIFY(m_controller->hasFailed());
        QCOMPARE(results.size(), 1);
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
    }

    void aMissingCheckpointFailsNamingTheFile()
    {
        QSignalSpy failures(m_controller, &ExplainController::loadFailed);
        QSignalSpy loaded(m_controller, &ExplainController::modelLoaded);
        const QString missing = m_dir.filePath(QStringLiteral("missing.pth"));
        m_controller->load(ModelRole::Primary, missing);
        QVERIFY(m_controller->isLoading());
        QVERIFY(m_controller->isBusy());
        QVERIFY(failures.wait(kTimeoutMs));
        const auto failure = failures.first().first().value<ExplainFailure>();
        QVERIFY(failure.loading);
        QCOMPARE(failure.checkpoint, missing);
        QVERIFY2(failure.message.contains(QStringLiteral("missing.pth")), qPrintable(failure.message));
        QCOMPARE(loaded.size(), 0);
        QVERIFY(!m_controller->isModelLoaded());
        QVERIFY(!m_controller->isBusy());
    }

    void outOfMemoryOffersWhatARetryCouldChange()
    {
        QVERIFY(loadPrimary());
        InferenceWorker::setFaultForTesting([](const ExplainRequest&) {
            throw c10::Error("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)", "");
        });
        QSignalSpy failures(m_controller, &ExplainController::failed);
        m_controller->explain(fec::test::chelseaPath());
        QVERIFY(failures.wait(kTimeoutMs));
        auto failure = failures.last().first().value<ExplainFailure>();
        QVERIFY(failure.outOfMemory);
        QVERIFY2(failure.message.contains(QStringLiteral("out of memory")), qPrintable(failure.message));
        // Already on the CPU: only a smaller input (about half the pixels of 224 x 224) is worth trying.
        QVERIFY(!failure.retryOnCpu);
        QCOMPARE(failure.retrySize, 160);

        // Asked for the GPU ("auto"), and CUDA said it ran out: the CPU is worth trying too.
        ExplainSettings settings = cpuSettings();
        settings.device = QStringLiteral("auto");
        m_controller->setSettings(settings);
        m_controller->run();
        QVERIFY(failures.wait(kTimeoutMs));
        failure = failures.last().first().value<ExplainFailure>();
        QVERIFY(failure.retryOnCpu);
        QCOMPARE(failure.retrySize, 160);
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
    }

    void cancelDeliversNothing()
    {
        QVERIFY(loadPrimary());
        QSignalSpy results(m_controller, &ExplainController::resultReady);
        QSignalSpy failures(m_controller, &ExplainController::failed);
        m_controller->explain(fec::test::chelseaPath());
        m_controller->cancel();
        QVERIFY(!m_controller->isResultPending());
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
        QTest::qWait(200);
        QCOMPARE(results.size(), 0);
        QCOMPARE(failures.size(), 0);
        // Still works afterwards.
        m_controller->run();
        QVERIFY(results.wait(kTimeoutMs));
    }

    void viewsOutOfSightAreLeftToRedraw()
    {
        // The pyramid (0) shows the primary result; the compare view (1) both models' results.
        m_controller->addView(0);
        m_controller->addView(1, true);
        QVERIFY(loadPrimary());
        QVERIFY(load(ModelRole::Comparison));
        QVERIFY(m_controller->isModelLoaded(ModelRole::Comparison));

        // The compare view is shown and draws each primary result at once, as the window does.
        m_controller->setShownView(1);
        auto drawShown =
            connect(m_controller, &ExplainController::resultReady, this, [this] { m_controller->markDrawn(1); });
        m_controller->explain(fec::test::chelseaPath());
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isResultPending() && !m_controller->isComparisonPending(), kTimeoutMs);
        QVERIFY(m_controller->result());
        QVERIFY(m_controller->comparisonResult());
        QCOMPARE(m_controller->comparisonResult()->imagePath, fec::test::chelseaPath());
        QVERIFY(m_controller->isStale(0));
        QVERIFY(!m_controller->isStale(1));  // it took the comparison result too

        // Out of sight, the compare view is left to redraw when it is shown.
        m_controller->markDrawn(0);
        m_controller->setShownView(0);
        disconnect(drawShown);
        connect(m_controller, &ExplainController::resultReady, this, [this] { m_controller->markDrawn(0); });
        m_controller->explain(m_images.last());
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isResultPending() && !m_controller->isComparisonPending(), kTimeoutMs);
        QVERIFY(!m_controller->isStale(0));
        QVERIFY(m_controller->isStale(1));

        // Closing the comparison model drops its result.
        m_controller->closeComparison();
        QVERIFY(!m_controller->comparisonResult());
        QVERIFY(!m_controller->isModelLoaded(ModelRole::Comparison));
        QTRY_VERIFY_WITH_TIMEOUT(!m_controller->isBusy(), kTimeoutMs);
    }

private:
    bool load(ModelRole role)
    {
        QSignalSpy loaded(m_controller, &ExplainController::modelLoaded);
        m_controller->load(role, fec::test::refPath("tiny_seed0.pth.tar"));
        return loaded.wait(kTimeoutMs) && loaded.first().first().value<ModelRole>() == role;
    }
    bool loadPrimary() { return load(ModelRole::Primary); }

    QTemporaryDir m_dir;
    QStringList m_images;
    ExplainController* m_controller = nullptr;
};

QTEST_MAIN(TestExplainController)
#include "test_explain_controller.moc"
