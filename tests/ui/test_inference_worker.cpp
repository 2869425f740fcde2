// The inference worker on its own thread: results arrive, stale requests are dropped, cancel()
// stops a pending request, and failures (bad image, corrupt checkpoint) arrive as signals that
// name the file.

#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QThread>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/inference_worker.h"
#include "fec/ui/model_session.h"

using namespace fec::ui;

// Re-emits the worker's signals on the GUI thread (as the window receives them), so that the
// spies are only touched by the GUI thread.
class Relay : public QObject {
    Q_OBJECT
Q_SIGNALS:
    void resultReady(fec::ui::ExplainResultPtr result);
    void failed(quint64 requestId, const QString& message);
    void busyChanged(bool busy);
};

class TestInferenceWorker : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        FEC_REQUIRE_FIXTURE("inputs/chelsea.png");
        m_bundle = fec::test::loadBundle();
        QVERIFY(m_bundle);
        // Several distinct images so that results can be told apart.
        QVERIFY(m_dir.isValid());
        QImage chelsea(fec::test::chelseaPath());
        QVERIFY(!chelsea.isNull());
        for (int i = 0; i < 4; ++i) {
            const QString path = m_dir.filePath(QStringLiteral("image%1.png").arg(i));
            QVERIFY(chelsea.copy(i * 20, 0, chelsea.width() - i * 20, chelsea.height()).save(path));
            m_images << path;
        }
    }

    void init()
    {
        m_thread = new QThread;
        m_worker = new InferenceWorker(m_bundle);
        m_worker->moveToThread(m_thread);
        m_relay = new Relay;
        connect(m_worker, &InferenceWorker::resultReady, m_relay, &Relay::resultReady, Qt::QueuedConnection);
        connect(m_worker, &InferenceWorker::failed, m_relay, &Relay::failed, Qt::QueuedConnection);
        connect(m_worker, &InferenceWorker::busyChanged, m_relay, &Relay::busyChanged, Qt::QueuedConnection);
        m_thread->start();
    }

    void cleanup()
    {
        m_worker->cancel();
        m_thread->quit();
        QVERIFY(m_thread->wait(30000));
        delete m_worker;
        delete m_thread;
        delete m_relay;
    }

    void deliversAResult()
    {
        QSignalSpy results(m_relay, &Relay::resultReady);
        QSignalSpy busy(m_relay, &Relay::busyChanged);
        ExplainRequest request;
        request.imagePath = fec::test::chelseaPath();
        request.size = 224;
        const quint64 id = m_worker->requestExplain(request);
        QVERIFY(id > 0);
        QTRY_VERIFY_WITH_TIMEOUT(results.size() >= 1, 60000);
        const auto result = results.first().first().value<ExplainResultPtr>();
        QVERIFY(result);
        QCOMPARE(result->requestId, id);
        QCOMPARE(result->imagePath, request.imagePath);
        QCOMPARE(result->image.cols, 451);
        QCOMPARE(result->pyramid.inputH, 224);
        QCOMPARE(result->pyramid.levelCount(), 3);
        QVERIFY(result->merger);
        QVERIFY(result->merger->maxK() >= 2);
        QVERIFY(!result->partitions.empty());
        QVERIFY(!result->topClasses.empty());
        QVERIFY(result->topClasses.size() <= 5);
        QVERIFY(result->topClasses.front().second >= result->topClasses.back().second);
        QVERIFY(result->inferenceMs > 0);
        QVERIFY(result->device.startsWith(QStringLiteral("cpu")));
        QTRY_VERIFY_WITH_TIMEOUT(!m_worker->isBusy(), 5000);
        QTRY_VERIFY_WITH_TIMEOUT(busy.size() >= 2, 5000);
        QCOMPARE(busy.first().first().toBool(), true);
        QCOMPARE(busy.last().first().toBool(), false);
    }

    void dropsStaleRequests()
    {
        QSignalSpy results(m_relay, &Relay::resultReady);
        QSignalSpy failures(m_relay, &Relay::failed);
        quint64 last = 0;
        for (int round = 0; round < 3; ++round)
            for (const auto& image : std::as_const(m_images)) {
                ExplainRequest request;
                request.imagePath = image;
                last = m_worker->requestExplain(request);
            }
        QTRY_VERIFY_WITH_TIMEOUT(!m_worker->isBusy(), 60000);
        QTest::qWait(100);  // anything queued from the worker thread arrives now
        QCOMPARE(failures.size(), 0);
        QCOMPARE(results.size(), 1);
        const auto result = results.first().first().value<ExplainResultPtr>();
        QCOMPARE(result->requestId, last);
        QCOMPARE(result->imagePath, m_images.last());
    }

    void cancelStopsAPendingRequest()
    {
        QSignalSpy results(m_relay, &Relay::resultReady);
        QSignalSpy failures(m_relay, &Relay::failed);
        ExplainRequest request;
        request.imagePath = m_images.first();
        m_worker->requestExplain(request);
        m_worker->cancel();
        QTRY_VERIFY_WITH_TIMEOUT(!m_worker->isBusy(), 60000);
        QTest::qWait(200);
        QCOMPARE(results.size(), 0);
        QCOMPARE(failures.size(), 0);
        // The worker still works afterwards.
        m_worker->requestExplain(request);
        QTRY_VERIFY_WITH_TIMEOUT(results.size() >= 1, 60000);
    }

    void badImageArrivesAsFailure()
    {
        QSignalSpy results(m_relay, &Relay::resultReady);
        QSignalSpy failures(m_relay, &Relay::failed);
        const QString missing = m_dir.filePath(QStringLiteral("no-such-image.png"));
        ExplainRequest request;
        request.imagePath = missing;
        const quint64 id = m_worker->requestExplain(request);
        QTRY_VERIFY_WITH_TIMEOUT(failures.size() >= 1, 30000);
        QCOMPARE(failures.first().at(0).toULongLong(), id);
        QVERIFY2(failures.first().at(1).toString().contains(QStringLiteral("no-such-image.png")),
                 qPrintable(failures.first().at(1).toString()));

        const QString garbage = m_dir.filePath(QStringLiteral("garbage.png"));
        QFile f(garbage);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("this is not a PNG file");
        f.close();
        request.imagePath = garbage;
        m_worker->requestExplain(request);
        QTRY_VERIFY_WITH_TIMEOUT(failures.size() >= 2, 30000);
        QVERIFY2(failures.last().at(1).toString().contains(QStringLiteral("garbage.png")),
                 qPrintable(failures.last().at(1).toString()));
        QCOMPARE(results.size(), 0);
    }

    void badSizeArrivesAsFailure()
    {
        QSignalSpy failures(m_relay, &Relay::failed);
        ExplainRequest request;
        request.imagePath = fec::test::chelseaPath();
        request.size = 100;  // not a multiple of 32
        m_worker->requestExplain(request);
        QTRY_VERIFY_WITH_TIMEOUT(failures.size() >= 1, 30000);
        QVERIFY(failures.first().at(1).toString().contains(QStringLiteral("chelsea.png")));
    }

    void corruptCheckpointArrivesAsFailure()
    {
        const QString corrupt = m_dir.filePath(QStringLiteral("corrupt.pth.tar"));
        QFile source(fec::test::refPath("tiny_seed0.pth.tar"));
        QVERIFY(source.open(QIODevice::ReadOnly));
        QByteArray bytes = source.readAll();
        bytes.truncate(bytes.size() / 3);
        QFile out(corrupt);
        QVERIFY(out.open(QIODevice::WriteOnly));
        out.write(bytes);
        out.close();

        ModelSession session;
        QSignalSpy loaded(&session, &ModelSession::loaded);
        QSignalSpy failed(&session, &ModelSession::loadFailed);
        ModelLoadOptions options;
        options.path = corrupt;
        options.device = QStringLiteral("cpu");
        session.load(options);
        QVERIFY(session.isLoading());
        QVERIFY(failed.wait(30000));
        QCOMPARE(loaded.size(), 0);
        QCOMPARE(failed.first().at(0).toString(), corrupt);
        QVERIFY2(failed.first().at(1).toString().contains(QStringLiteral("corrupt.pth.tar")),
                 qPrintable(failed.first().at(1).toString()));
        QVERIFY(!session.isLoaded());
        QVERIFY(!session.isLoading());

        options.path = m_dir.filePath(QStringLiteral("missing.pth"));
        session.load(options);
        QVERIFY(failed.wait(30000));
        QVERIFY(failed.last().at(1).toString().contains(QStringLiteral("missing.pth")));
    }

    void sessionLoadsAndRuns()
    {
        ModelSession session;
        QSignalSpy loaded(&session, &ModelSession::loaded);
        QSignalSpy results(&session, &ModelSession::resultReady);
        ModelLoadOptions options;
        options.path = fec::test::refPath("tiny_seed0.pth.tar");
        options.device = QStringLiteral("cpu");
        session.load(options);
        QVERIFY(loaded.wait(30000));
        QVERIFY(session.isLoaded());
        QCOMPARE(session.summary().fileName, QStringLiteral("tiny_seed0.pth.tar"));
        QVERIFY(session.summary().parameters > 0);
        QVERIFY(!session.summary().rows().isEmpty());
        ExplainRequest request;
        request.imagePath = m_images[0];
        session.explain(request);
        request.imagePath = m_images[1];
        const quint64 last = session.explain(request);
        QVERIFY(results.wait(60000));
        QTRY_VERIFY_WITH_TIMEOUT(!session.isBusy(), 30000);
        QTest::qWait(100);
        QCOMPARE(results.size(), 1);
        QCOMPARE(results.first().first().value<ExplainResultPtr>()->requestId, last);
    }

private:
    std::shared_ptr<ModelBundle> m_bundle;
    QTemporaryDir m_dir;
    QStringList m_images;
    QThread* m_thread = nullptr;
    InferenceWorker* m_worker = nullptr;
    Relay* m_relay = nullptr;
};

QTEST_MAIN(TestInferenceWorker)
#include "test_inference_worker.moc"
