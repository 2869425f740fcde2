// The Training dock of the explorer driving real `fec train` runs (a tiny model on a Fashion-MNIST
// subset): the charts receive the points while the window stays responsive, Stop saves
// last.pth.tar and Resume continues, a crashing child is reported without harm, a checkpoint of the
// run opens in the explorer, and closing the window stops what is still running.

#include <QDir>
#include <QDockWidget>
#include <QFile>
#include <QImage>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "fec/ui/main_window.h"
#include "fec/ui/training_charts.h"
#include "fec/ui/training_panel.h"
#include "fec/ui/training_run.h"
#include "fec/ui/training_run_model.h"

using namespace fec::ui;

namespace {

const QString kFashionMnist = QStringLiteral("/usr/share/datasets/fashion-mnist");

// The quick start's tiny architecture at 32x32 (docs/training.md).
TrainingSpec tinySpec(const QString& out, int trainLimit, int epochs)
{
    TrainingSpec s;
    s.data = kFashionMnist;
    s.out = out;
    s.trainLimit = trainLimit;
    s.valLimit = 128;
    s.arch = QStringLiteral("custom");
    s.layers = QStringLiteral("1,1,1,1");
    s.dims = QStringLiteral("16,32,64,96");
    s.heads = QStringLiteral("2,2,4,4");
    s.headDims = QStringLiteral("8,8,8,8");
    s.mlpRatios = QStringLiteral("2,2,2,2");
    s.proposals = QStringLiteral("2,2,1,1");
    s.size = 32;
    s.batch = 32;
    s.epochs = epochs;
    s.logEvery = 1;
    s.workers = 1;
    s.threads = 1;
    return s;
}

// Longest gap between ticks of a 10 ms timer: how long the GUI thread was ever busy.
class Heartbeat : public QObject {
public:
    Heartbeat()
    {
        m_timer.setInterval(10);
        QObject::connect(&m_timer, &QTimer::timeout, this, [this] {
            if (m_clock.isValid())
                m_maxGapMs = std::max(m_maxGapMs, m_clock.restart());
            else
                m_clock.start();
        });
        m_timer.start();
    }
    qint64 maxGapMs() const { return m_maxGapMs; }

private:
    QTimer m_timer;
    QElapsedTimer m_clock;
    qint64 m_maxGapMs = 0;
};

}  // namespace

class TestTrainingPanel : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    MainWindow* m_window = nullptr;
    TrainingPanel* m_panel = nullptr;

private Q_SLOTS:
    void initTestCase()
    {
        qRegisterMetaType<RunStatus>();
        if (!QFile::exists(QDir(kFashionMnist).filePath(QStringLiteral("train-images-idx3-ubyte.gz"))))
            QSKIP(
                "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist (Debian: dataset-fashion-mnist)");
        QVERIFY(QFileInfo(QStringLiteral(FEC_EXECUTABLE)).isExecutable());
        QVERIFY(m_dir.isValid());
        MainWindowOptions options;
        options.useSettings = false;
        options.interactive = false;
        options.loadDefaults = false;
        m_window = new MainWindow(options);
        m_window->resize(1400, 900);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window));
        m_panel = m_window->trainingPanel();
        QVERIFY(m_panel);
        m_panel->setFecProgram(QStringLiteral(FEC_EXECUTABLE));
        m_window->showTraining();
        QVERIFY(m_panel->isVisible());
    }

    void cleanupTestCase() { delete m_window; }

    void realRunDrawsCurvesAndFinishes()
    {
        m_panel->setSpec(tinySpec(m_dir.filePath(QStringLiteral("tiny")), 256, 2));
        QSignalSpy updated(m_panel->charts(), &TrainingCharts::updated);
        Heartbeat heartbeat;
        TrainingRun* run = m_panel->startRun();
        QVERIFY2(run, qPrintable(m_panel->lastError()));
        QCOMPARE(m_panel->currentRun(), run);
        QTRY_VERIFY_WITH_TIMEOUT(m_panel->charts()->trainLossPoints() > 0, 30000);
        QTRY_VERIFY_WITH_TIMEOUT(!run->isActive(), 60000);
        QVERIFY2(run->status() == RunStatus::Finished, qPrintable(run->message()));
        qInfo("longest GUI stall while the run trained: %lld ms", static_cast<long long>(heartbeat.maxGapMs()));
        QVERIFY2(heartbeat.maxGapMs() < 1000, "the GUI thread must not wait for the run");

        // 256 images / batch 32 = 8 steps per epoch, logged every step; one validation per epoch.
        QCOMPARE(run->totalSteps(), 16);
        QCOMPARE(m_panel->charts()->trainLossPoints(), 16);
        QCOMPARE(m_panel->charts()->learningRatePoints(), 16);
        QCOMPARE(m_panel->charts()->valLossPoints(), 2);
        QCOMPARE(m_panel->charts()->accuracyPoints(), 2);
        QVERIFY(updated.size() >= 2);
        QVERIFY(!run->lastCheckpoint().isEmpty());
        QVERIFY(!run->bestCheckpoint().isEmpty());
        QVERIFY(run->message().startsWith(QLatin1String("done, 16 steps")));

        const auto* model = m_panel->model();
        const int row = model->rowOf(run);
        QCOMPARE(model->data(model->index(row, TrainingRunModel::Status)).toString(), QStringLiteral("finished"));
        QCOMPARE(model->data(model->index(row, TrainingRunModel::Step)).toString(), QStringLiteral("16/16"));
        QVERIFY(model->data(model->index(row, TrainingRunModel::Top1)).toString().endsWith('%'));

        // The charts export as an image a user can open.
        const QString png = m_dir.filePath(QStringLiteral("curves.png"));
        QString error;
        QVERIFY2(m_panel->charts()->exportTo(png, &error), qPrintable(error));
        QImage image(png);
        QVERIFY(!image.isNull());
        QVERIFY(image.width() > image.height());
        QVERIFY(m_panel->charts()->exportTo(m_dir.filePath(QStringLiteral("curves.pdf")), &error));
        QVERIFY(!m_panel->charts()->exportTo(m_dir.filePath(QStringLiteral("curves.txt")), &error));

        // FEC_TRAINING_SCREENSHOT=FILE.png saves the dock as it looks now (docs/screenshots/training.png).
        const QString shot = qEnvironmentVariable("FEC_TRAINING_SCREENSHOT");
        if (!shot.isEmpty()) {
            auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("trainingDock"));
            QVERIFY(dock);
            dock->setFloating(true);
            dock->resize(1500, 720);
            QTest::qWait(600);
            QVERIFY(dock->grab().save(shot));
            dock->setFloating(false);
        }
    }

    void probeOpensTheCheckpointInTheExplorer()
    {
        TrainingRun* run = m_panel->currentRun();
        QVERIFY(run && !run->bestCheckpoint().isEmpty());
        QSignalSpy loaded(m_window, &MainWindow::modelLoaded);
        QSignalSpy requested(m_panel, &TrainingPanel::openCheckpointRequested);
        QVERIFY(m_panel->probe(run, true));
        QCOMPARE(requested.size(), 1);
        QCOMPARE(requested.first().first().toString(), run->bestCheckpoint());
        QVERIFY(loaded.wait(30000));
        QVERIFY(m_window->isModelLoaded());
    }

    void reopensTheFolder()
    {
        TrainingRun* run = m_panel->currentRun();
        QVERIFY(run);
        QString error;
        std::unique_ptr<TrainingRun> again(TrainingRun::open(run->dir(), &error));
        QVERIFY2(again, qPrintable(error));
        QCOMPARE(again->status(), RunStatus::Finished);
        QCOMPARE(again->history().train().size(), 16);
        QCOMPARE(again->history().val().size(), 2);
        QCOMPARE(again->spec().dims, QStringLiteral("16,32,64,96"));
        // Listed already: selecting, not duplicating.
        const int rows = m_panel->model()->rowCount();
        QCOMPARE(m_panel->openRunFolder(run->dir()), run);
        QCOMPARE(m_panel->model()->rowCount(), rows);
        // Starting again into a used folder is refused without dialogs.
        m_panel->setSpec(run->spec());
        QVERIFY(!m_panel->startRun());
        QVERIFY(m_panel->lastError().contains(QLatin1String("already holds a run")));
    }

    void stopSavesAndResumeContinues()
    {
        m_panel->setSpec(tinySpec(m_dir.filePath(QStringLiteral("long")), 4096, 20));
        TrainingRun* run = m_panel->startRun();
        QVERIFY2(run, qPrintable(m_panel->lastError()));
        QTRY_VERIFY_WITH_TIMEOUT(run->history().train().size() >= 3, 30000);
        QVERIFY(run->status() == RunStatus::Running);
        QVERIFY(m_panel->stopRun(run));
        QCOMPARE(run->status(), RunStatus::Stopping);
        QTRY_VERIFY_WITH_TIMEOUT(!run->isActive(), 30000);
        QVERIFY2(run->status() == RunStatus::Stopped, qPrintable(run->message()));
        QVERIFY2(run->message().startsWith(QLatin1String("stopped at step")), qPrintable(run->message()));
        QVERIFY(!run->lastCheckpoint().isEmpty());
        QCOMPARE(run->exitCode(), 0);
        const qint64 stoppedAt = run->history().lastStep();

        QVERIFY2(m_panel->resumeRun(run), qPrintable(m_panel->lastError()));
        QTRY_VERIFY_WITH_TIMEOUT(run->history().lastStep() > stoppedAt + 2, 30000);
        // The resumed run continues the same curve (nothing before the stop was lost).
        QVERIFY(run->history().train().first().step == 1);
        QCOMPARE(m_panel->charts()->trainLossPoints(), run->history().train().size());
        QVERIFY(m_panel->stopRun(run));
        QTRY_VERIFY_WITH_TIMEOUT(!run->isActive(), 30000);
        QCOMPARE(run->status(), RunStatus::Stopped);
    }

    void crashingChildIsReported()
    {
        const QString fake = m_dir.filePath(QStringLiteral("fake-fec"));
        QFile f(fake);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(
            "#!/bin/sh\nprintf 'garbage \\001 {\"phase\": \\n'\necho 'Segmentation fault (core dumped)' >&2\nexit 3\n");
        f.close();
        f.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
        m_panel->setFecProgram(fake);
        m_panel->setSpec(tinySpec(m_dir.filePath(QStringLiteral("crash")), 256, 1));
        TrainingRun* run = m_panel->startRun();
        QVERIFY(run);
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Failed, 10000);
        QCOMPARE(run->exitCode(), 3);
        QVERIFY2(run->message().contains(QLatin1String("Segmentation fault")), qPrintable(run->message()));
        QVERIFY(run->logTail().join('\n').contains(QLatin1String("garbage")));
        QCOMPARE(m_panel->charts()->trainLossPoints(), 0);
        QVERIFY(m_window->isVisible());
        m_panel->setFecProgram(QStringLiteral(FEC_EXECUTABLE));
    }

    void closingTheWindowStopsRuns()
    {
        m_panel->setSpec(tinySpec(m_dir.filePath(QStringLiteral("closing")), 4096, 20));
        TrainingRun* run = m_panel->startRun();
        QVERIFY2(run, qPrintable(m_panel->lastError()));
        QTRY_VERIFY_WITH_TIMEOUT(!run->history().train().isEmpty(), 30000);
        QCOMPARE(m_panel->activeRunCount(), 1);
        QVERIFY(m_window->close());  // non-interactive: stop and wait
        QCOMPARE(run->status(), RunStatus::Stopped);
        QVERIFY(!run->lastCheckpoint().isEmpty());
        QCOMPARE(m_panel->activeRunCount(), 0);
    }
};

QTEST_MAIN(TestTrainingPanel)
#include "test_training_panel.moc"
