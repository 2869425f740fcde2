// Training runs and their list as the user sees them, driven by fake `fec` executables (shell
// scripts): the status goes new -> starting -> running -> finished / stopped / failed with the
// exit code and the log's last line, a partial metrics line is joined, a run left running is found
// again from its folder, and existing run folders are read back.

#include <QDir>
#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <csignal>

#include "fec/ui/training_run.h"
#include "fec/ui/training_run_model.h"

using namespace fec::ui;

namespace {

// Finds --out in the arguments; every fake starts with it.
const char* const kPrologue = R"(#!/bin/sh
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
m="$out/metrics.jsonl"
)";

QList<RunStatus> statuses(const QSignalSpy& spy)
{
    QList<RunStatus> list;
    for (const auto& args : spy)
        list << args.at(0).value<RunStatus>();
    return list;
}

} // namespace

class TestTrainingRunModel : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    int m_count = 0;

    QString fake(const QByteArray& body)
    {
        const QString path = m_dir.filePath(QStringLiteral("fake-fec-%1").arg(++m_count));
        QFile f(path);
        if (!f.open(QIODevice::WriteOnly))
            return {};
        f.write(QByteArray(kPrologue) + body);
        f.close();
        f.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
        return path;
    }

    TrainingSpec spec()
    {
        TrainingSpec s;
        s.data = m_dir.path();
        s.out = m_dir.filePath(QStringLiteral("run-%1").arg(++m_count));
        return s;
    }

private Q_SLOTS:
    void initTestCase()
    {
        qRegisterMetaType<RunStatus>();
        QVERIFY(m_dir.isValid());
    }

    void finishesAndJoinsPartialLines()
    {
        const QString exe = fake(R"(
echo "epoch 1/1  step 1/2  loss 2.0"
printf '%s\n' '{"phase":"train","epoch":0,"step":1,"total_steps":2,"loss":2.0,"lr":0.001,"images_per_s":100}' >> "$m"
printf '%s' '{"phase":"train","epoch":0,"step":2,"total_steps":2,' >> "$m"
sleep 0.6
printf '%s\n' '"loss":1.5,"lr":0.0005,"images_per_s":120}' >> "$m"
printf '%s\n' '{"phase":"val","epoch":0,"step":2,"total_steps":2,"loss":1.4,"lr":0.0005,"top1":50,"top5":90}' >> "$m"
echo x > "$out/last.pth.tar"
echo "fec train: done, 2 steps; last checkpoint $out/last.pth.tar" >&2
)");
        TrainingRunModel model;
        auto* run = new TrainingRun(spec());
        model.addRun(run);
        QCOMPARE(run->status(), RunStatus::New);
        QSignalSpy status(run, &TrainingRun::statusChanged);
        QSignalSpy metrics(run, &TrainingRun::metricAdded);
        QSignalSpy checkpoints(run, &TrainingRun::checkpointWritten);
        QVERIFY(run->start(exe));
        QVERIFY(run->isActive());
        QVERIFY(run->isAttached());
        QVERIFY(!model.removeRun(0)); // not while it runs
        // While the second line is half written, only the first one is shown.
        QTRY_COMPARE_WITH_TIMEOUT(run->history().train().size(), 1, 5000);
        QVERIFY(run->status() == RunStatus::Running);
        QVERIFY(QFile::exists(QDir(run->dir()).filePath(QStringLiteral("explorer-process.json"))));
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Finished, 10000);
        QCOMPARE(statuses(status), (QList<RunStatus>{RunStatus::Starting, RunStatus::Running, RunStatus::Finished}));
        QCOMPARE(run->exitCode(), 0);
        QCOMPARE(run->history().train().size(), 2);
        QCOMPARE(run->history().train().last().loss, 1.5);
        QCOMPARE(run->history().val().size(), 1);
        QCOMPARE(metrics.size(), 3);
        QVERIFY(!checkpoints.isEmpty());
        QVERIFY(run->message().startsWith(QLatin1String("done, 2 steps")));
        QVERIFY(!QFile::exists(QDir(run->dir()).filePath(QStringLiteral("explorer-process.json"))));
        QVERIFY(run->logTail().join('\n').contains(QLatin1String("epoch 1/1  step 1/2")));

        const auto cell = [&](int column) { return model.data(model.index(0, column)).toString(); };
        QCOMPARE(cell(TrainingRunModel::Status), QStringLiteral("finished"));
        QCOMPARE(cell(TrainingRunModel::Step), QStringLiteral("2/2"));
        QCOMPARE(cell(TrainingRunModel::Loss), QStringLiteral("1.5000"));
        QCOMPARE(cell(TrainingRunModel::Top1), QStringLiteral("50.00%"));
        QCOMPARE(cell(TrainingRunModel::Top5), QStringLiteral("90.00%"));
        QCOMPARE(cell(TrainingRunModel::Speed), QStringLiteral("120.0"));
        QVERIFY(model.removeRun(0));
        QCOMPARE(model.rowCount(), 0);
    }

    void failsWithExitCodeAndLastLine()
    {
        const QString exe = fake(R"(
printf 'garbage \001\002 {not json\n' >> "$m"
echo "some noise on stdout"
echo "fec: --data: boom, this is the reason" >&2
exit 3
)");
        TrainingRunModel model;
        auto* run = new TrainingRun(spec());
        model.addRun(run);
        QSignalSpy status(run, &TrainingRun::statusChanged);
        QVERIFY(run->start(exe));
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Failed, 10000);
        QCOMPARE(run->exitCode(), 3);
        QVERIFY2(run->message().contains(QLatin1String("exit code 3")), qPrintable(run->message()));
        QVERIFY2(run->message().contains(QLatin1String("boom, this is the reason")), qPrintable(run->message()));
        QVERIFY(run->history().isEmpty());
        QCOMPARE(statuses(status).last(), RunStatus::Failed);
        QCOMPARE(model.data(model.index(0, TrainingRunModel::Status)).toString(), QStringLiteral("failed (3)"));
        QVERIFY(model.data(model.index(0, TrainingRunModel::Message), Qt::ToolTipRole).toString().contains(QLatin1String("noise")));
    }

    void crashBySignalIsAFailure()
    {
        const QString exe = fake("echo 'about to crash' >&2\nkill -SEGV $$\nsleep 5\n");
        auto* run = new TrainingRun(spec(), this);
        QVERIFY(run->start(exe));
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Failed, 10000);
        QVERIFY2(run->message().contains(QLatin1String("crashed")), qPrintable(run->message()));
        delete run;
    }

    void cannotStart_data()
    {
        QTest::addColumn<QString>("program");
        QTest::addColumn<bool>("validSpec");
        QTest::addColumn<QString>("expected");
        QTest::newRow("no executable") << QString() << true << QStringLiteral("not found");
        QTest::newRow("missing file") << QStringLiteral("/nonexistent/fec") << true << QStringLiteral("not an executable");
        QTest::newRow("no data") << QStringLiteral("/bin/true") << false << QStringLiteral("training data");
    }

    void cannotStart()
    {
        QFETCH(QString, program);
        QFETCH(bool, validSpec);
        QFETCH(QString, expected);
        TrainingSpec s = spec();
        if (!validSpec)
            s.data.clear();
        TrainingRun run(s);
        QVERIFY(!run.start(program));
        QCOMPARE(run.status(), RunStatus::Failed);
        QVERIFY2(run.message().contains(expected), qPrintable(run.message()));
        QVERIFY(!run.isActive());
    }

    void stopSendsSigtermAndEndsStopped()
    {
        const QString exe = fake(R"(
trap 'echo x > "$out/last.pth.tar"; echo "fec train: stopped at step 1 of 10; checkpoint $out/last.pth.tar; continue with: fec train --resume --out $out" >&2; exit 0' TERM
printf '%s\n' '{"phase":"train","epoch":0,"step":1,"total_steps":10,"loss":2.0,"lr":0.001}' >> "$m"
while true; do sleep 0.05; done
)");
        auto* run = new TrainingRun(spec(), this);
        QSignalSpy status(run, &TrainingRun::statusChanged);
        QVERIFY(run->start(exe));
        QTRY_COMPARE_WITH_TIMEOUT(run->history().train().size(), 1, 5000);
        run->stop();
        QCOMPARE(run->status(), RunStatus::Stopping);
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Stopped, 10000);
        QCOMPARE(statuses(status),
                 (QList<RunStatus>{RunStatus::Starting, RunStatus::Running, RunStatus::Stopping, RunStatus::Stopped}));
        QVERIFY2(run->message().startsWith(QLatin1String("stopped at step 1 of 10")), qPrintable(run->message()));
        QVERIFY(!run->lastCheckpoint().isEmpty());

        // Resume runs `fec train --resume --out RUN` in the same folder.
        const QString args = m_dir.filePath(QStringLiteral("resume-args"));
        const QString resumeExe = fake(QStringLiteral("echo \"$@\" > '%1'\necho 'fec train: done, 10 steps' >&2\n").arg(args).toUtf8());
        QVERIFY(run->resume(resumeExe));
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Finished, 10000);
        QFile f(args);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(QString::fromUtf8(f.readAll()).trimmed(), QStringLiteral("train --resume --out %1").arg(run->dir()));
        delete run;
    }

    void detachedRunIsFoundAgain()
    {
        const QString exe = fake(R"(
trap 'echo x > "$out/last.pth.tar"; echo "fec train: stopped at step 1 of 10; continue with: fec train --resume --out $out" >&2; exit 0' TERM
printf '%s\n' '{"phase":"train","epoch":0,"step":1,"total_steps":10,"loss":2.0,"lr":0.001}' >> "$m"
while true; do sleep 0.05; done
)");
        const TrainingSpec s = spec();
        auto* run = new TrainingRun(s);
        QVERIFY(run->start(exe));
        QTRY_COMPARE_WITH_TIMEOUT(run->status(), RunStatus::Running, 5000);
        const qint64 pid = run->pid();
        run->detach();
        QVERIFY(!run->isAttached());
        delete run; // a detached run is not stopped by its destructor
        QTest::qWait(300);
        QCOMPARE(::kill(static_cast<pid_t>(pid), 0), 0);

        QString error;
        std::unique_ptr<TrainingRun> again(TrainingRun::open(s.out, &error));
        QVERIFY2(again, qPrintable(error));
        QCOMPARE(again->status(), RunStatus::Running);
        QVERIFY(!again->isAttached());
        QCOMPARE(again->pid(), pid);
        QTRY_COMPARE_WITH_TIMEOUT(again->history().train().size(), 1, 5000);
        again->stop(); // SIGTERM by pid
        QTRY_COMPARE_WITH_TIMEOUT(again->status(), RunStatus::Stopped, 10000);
        QVERIFY2(again->message().contains(QLatin1String("stopped at step 1")), qPrintable(again->message()));
    }

    void opensExistingFolders()
    {
        QString error;
        QVERIFY(!TrainingRun::open(m_dir.filePath(QStringLiteral("nothing-here")), &error));
        QVERIFY(error.contains(QLatin1String("does not exist")));
        QVERIFY(!TrainingRun::open(m_dir.path(), &error));
        QVERIFY(error.contains(QLatin1String("not a run folder")));

        const QString dir = m_dir.filePath(QStringLiteral("existing"));
        QVERIFY(QDir().mkpath(dir));
        const auto write = [&](const QString& name, const QByteArray& bytes) {
            QFile f(QDir(dir).filePath(name));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(bytes);
        };
        write(QStringLiteral("run.json"),
              R"({"format":"fec-train-run/1","options":{"config":{"variant":"custom","layers":[1,1,1,1],"dims":[16,32,64,96],)"
              R"("heads":[2,2,4,4],"head_dims":[8,8,8,8],"mlp_ratios":[2,2,2,2],"proposal_w":[2,2,1,1]},"size":32,"batch":32,)"
              R"("epochs":2,"lr":0.001,"seed":7,"workers":1},"total_steps":16,"epochs":2,)"
              R"("command":{"data":"/usr/share/datasets/fashion-mnist","train_limit":256,"val_limit":128}})");
        write(QStringLiteral("metrics.jsonl"),
              R"({"phase":"train","epoch":0,"step":8,"total_steps":16,"loss":2.1,"lr":0.001})"
              "\n"
              R"({"phase":"val","epoch":0,"step":8,"total_steps":16,"loss":2.0,"lr":0.001,"top1":27.3,"top5":71})"
              "\n");
        write(QStringLiteral("last.pth.tar"), "x");
        // A stale process file (no such process) is ignored.
        write(QStringLiteral("explorer-process.json"), R"({"pid":999999999})");
        std::unique_ptr<TrainingRun> run(TrainingRun::open(dir, &error));
        QVERIFY2(run, qPrintable(error));
        QCOMPARE(run->status(), RunStatus::Stopped);
        QCOMPARE(run->totalSteps(), 16);
        QCOMPARE(run->totalEpochs(), 2);
        QCOMPARE(run->history().val().size(), 1);
        QCOMPARE(run->spec().arch, QStringLiteral("custom"));
        QCOMPARE(run->spec().dims, QStringLiteral("16,32,64,96"));
        QCOMPARE(run->spec().size, 32);
        QCOMPARE(run->spec().seed, 7u);
        QCOMPARE(run->spec().trainLimit, 256);
        QCOMPARE(run->spec().data, QStringLiteral("/usr/share/datasets/fashion-mnist"));
        QVERIFY(!QFile::exists(QDir(dir).filePath(QStringLiteral("explorer-process.json"))));

        write(QStringLiteral("metrics.jsonl"), R"({"phase":"train","epoch":1,"step":16,"total_steps":16,"loss":1.9,"lr":0.0001})"
                                               "\n");
        run.reset(TrainingRun::open(dir, &error));
        QCOMPARE(run->status(), RunStatus::Finished);
    }

    void specArguments()
    {
        TrainingSpec s;
        s.data = QStringLiteral("/data");
        s.out = QStringLiteral("/runs/a");
        s.arch = QStringLiteral("custom");
        s.dims = QStringLiteral("16, 32, 64, 96");
        s.size = 32;
        s.ema = 0.999;
        s.threads = 1;
        s.extraArguments = QStringLiteral("--eval-resize \"crop\"");
        const QStringList a = s.arguments();
        QCOMPARE(a.mid(0, 7), (QStringList{"--threads", "1", "train", "--data", "/data", "--out", "/runs/a"}));
        QVERIFY(a.join(' ').contains(QLatin1String("--dims 16,32,64,96")));
        QVERIFY(!a.contains(QLatin1String("--arch")));
        QVERIFY(a.join(' ').contains(QLatin1String("--size 32")));
        QVERIFY(a.join(' ').contains(QLatin1String("--ema 0.999")));
        QVERIFY(!a.contains(QLatin1String("--mixup"))); // defaults are not repeated
        QCOMPARE(a.mid(a.size() - 2), (QStringList{"--eval-resize", "crop"}));
        // Round trip through the settings.
        const TrainingSpec back = TrainingSpec::fromJson(s.toJson());
        QCOMPARE(back.arguments(), a);
        // A custom architecture needs its numbers.
        s.dims = QStringLiteral("16,32");
        s.data = m_dir.path();
        QVERIFY(s.validate().contains(QLatin1String("four comma-separated")));
    }
};

QTEST_MAIN(TestTrainingRunModel)
#include "test_training_run_model.moc"
