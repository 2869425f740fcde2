// Training runs and their list as the user sees them, driven by fake `fec` executables (shell
// scripts): the status goes new -> starting -> running -> finished / stopped / failed with the
// exit code and the log's last line, a partial metrics line is joined, a run left running is found
// again from its folder, and existing run folders are read back. The final status comes from the
// trainer's structured record (run.json's "final"), never from the log's sentences.

#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <csignal>
#include <memory>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "fec/ui/training_run.h"
#include "fec/ui/training_run_model.h"

using namespace fec::ui;

namespace {

// Finds --out in the arguments; every fake starts with it. `final STATUS STEPS EPOCHS TOTAL BEST
// REASON` writes run.json with the trainer's final record, as `fec train` does when it ends.
const char* const kPrologue = R"sh(#!/bin/sh
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
m="$out/metrics.jsonl"
final() {
  printf '{"format":"fec-train-run/1","total_steps":%s,"final":{"status":"%s","steps":%s,"total_steps":%s,"epochs":%s,"best_metric":%s,"exit_reason":"%s","finished_at":%s,"last_checkpoint":"%s"}}\n' \
    "$4" "$1" "$2" "$4" "$3" "$5" "$6" "$(date +%s.%N)" "$out/last.pth.tar" > "$out/run.json.part" && mv "$out/run.json.part" "$out/run.json"
}
)sh";

QList<RunStatus> statuses(const QSignalSpy& spy)
{
    QList<RunStatus> list;
    for (const auto& args : spy)
        list << args.at(0).value<RunStatus>();
    return list;
}

}  // namespace

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
final done 2 1 2 '{"name":"top1","value":50,"epoch":0}' "reached the last step, 2 of 2"
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
        QVERIFY(!model.removeRun(0));  // not while it runs
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
        QVERIFY2(run->message().startsWith(QLatin1String("done, 2 steps, best top-1 50.00% (epoch 1)")),
                 qPrintable(run->message()));
        QVERIFY(run->finalRecord().present);
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
        QVERIFY(model.data(model.index(0, TrainingRunModel::Message), Qt::ToolTipRole)
                    .toString()
                    .contains(QLatin1String("noise")));
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
        QTest::newRow("missing file") << QStringLiteral("/nonexistent/fec") << true
                                      << QStringLiteral("not an executable");
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
trap 'echo x > "$out/last.pth.tar"; final stopped 1 0 10 null "stop requested at step 1 of 10"; exit 0' TERM
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
        const QString resumeExe =
            fake(QStringLiteral("echo \"$@\" > '%1'\nfinal done 10 1 10 null 'reached the last step (10 of 10)'\n")
                     .arg(args)
                     .toUtf8());
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
trap 'echo x > "$out/last.pth.tar"; final stopped 1 0 10 null "stop requested at step 1 of 10"; exit 0' TERM
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
        delete run;  // a detached run is not stopped by its destructor
        QTest::qWait(300);
        QCOMPARE(::kill(static_cast<pid_t>(pid), 0), 0);

        QString error;
        std::unique_ptr<TrainingRun> again(TrainingRun::open(s.out, &error));
        QVERIFY2(again, qPrintable(error));
        QCOMPARE(again->status(), RunStatus::Running);
        QVERIFY(!again->isAttached());
        QCOMPARE(again->pid(), pid);
        QTRY_COMPARE_WITH_TIMEOUT(again->history().train().size(), 1, 5000);
        again->stop();  // SIGTERM by pid
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
        write(
            QStringLiteral("run.json"),
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
        QVERIFY(!run->finalRecord().present);  // run.json of an fec older than the record
        QVERIFY2(run->message().contains(QLatin1String("no final record")), qPrintable(run->message()));
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

        write(QStringLiteral("metrics.jsonl"),
              R"({"phase":"train","epoch":1,"step":16,"total_steps":16,"loss":1.9,"lr":0.0001})"
              "\n");
        run.reset(TrainingRun::open(dir, &error));
        QCOMPARE(run->status(), RunStatus::Finished);
    }

    // A folder's final record decides its status, whatever the metrics and the log's sentences suggest.
    void finalRecordDecidesTheStatus_data()
    {
        QTest::addColumn<QByteArray>("record");
        QTest::addColumn<int>("status");
        QTest::addColumn<QString>("message");
        QTest::newRow("done")
            << QByteArray(R"j({"status":"done","steps":16,"total_steps":16,"epochs":2,)j"
                          R"j("best_metric":{"name":"ema_top1","value":91.5,"epoch":1},)j"
                          R"j("exit_reason":"reached the last step (16 of 16)","finished_at":1700000000.25,)j"
                          R"j("last_checkpoint":"/r/last.pth.tar","best_checkpoint":"/r/best.pth.tar"})j")
            << int(RunStatus::Finished) << QStringLiteral("done, 16 steps, best top-1 (EMA) 91.50% (epoch 2)");
        QTest::newRow("stopped")
            << QByteArray(R"j({"status":"stopped","steps":5,"total_steps":16,"epochs":0,"best_metric":null,)j"
                          R"j("exit_reason":"stop requested at step 5 of 16","finished_at":1700000000})j")
            << int(RunStatus::Stopped) << QStringLiteral("stopped at step 5 of 16; Resume continues it");
        QTest::newRow("failed")
            << QByteArray(R"j({"status":"failed","steps":3,"total_steps":16,"epochs":0,"best_metric":null,)j"
                          R"j("exit_reason":"image 40: truncated file","finished_at":1700000000})j")
            << int(RunStatus::Failed) << QStringLiteral("failed at step 3: image 40: truncated file");
    }

    void finalRecordDecidesTheStatus()
    {
        QFETCH(QByteArray, record);
        QFETCH(int, status);
        QFETCH(QString, message);
        const QString dir = m_dir.filePath(QStringLiteral("recorded-%1").arg(++m_count));
        QVERIFY(QDir().mkpath(dir));
        const auto write = [&](const QString& name, const QByteArray& bytes) {
            QFile f(QDir(dir).filePath(name));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(bytes);
        };
        write(QStringLiteral("run.json"),
              R"({"format":"fec-train-run/1","options":{"size":32},"total_steps":16,"epochs":2,"final":)" + record +
                  "}");
        write(QStringLiteral("metrics.jsonl"),
              R"({"phase":"train","epoch":0,"step":8,"total_steps":16,"loss":2.1,"lr":0.001})"
              "\n");
        write(QStringLiteral("last.pth.tar"), "x");
        // Sentences that used to decide the status; the record wins.
        write(QStringLiteral("train.log"),
              "fec train: stopped at step 8 of 16; checkpoint x\nfec train: done, 99 steps\n");
        QString error;
        std::unique_ptr<TrainingRun> run(TrainingRun::open(dir, &error));
        QVERIFY2(run, qPrintable(error));
        QCOMPARE(int(run->status()), status);
        QCOMPARE(run->message(), message);
        const auto& f = run->finalRecord();
        QVERIFY(f.present);
        QCOMPARE(f.totalSteps, 16);
        QVERIFY(f.finishedAt.isValid());
        QCOMPARE(f.finishedAt.toSecsSinceEpoch(), 1700000000);
        if (status == int(RunStatus::Finished)) {
            QCOMPARE(f.status, QStringLiteral("done"));
            QCOMPARE(f.steps, 16);
            QCOMPARE(f.epochs, 2);
            QCOMPARE(f.bestMetricName, QStringLiteral("ema_top1"));
            QCOMPARE(f.bestMetric, 91.5);
            QCOMPARE(f.bestEpoch, 1);
            QCOMPARE(f.exitReason, QStringLiteral("reached the last step (16 of 16)"));
            QCOMPARE(f.bestCheckpoint, QStringLiteral("/r/best.pth.tar"));
        } else {
            QVERIFY(f.bestMetricName.isEmpty());
        }
    }

    // A record older than the process (left by an earlier session) says nothing about it; a
    // failure's record gives its reason rather than the log's last line.
    void staleRecordIsIgnoredAndFailureReasonIsTheTrainers()
    {
        TrainingSpec s = spec();
        QVERIFY(QDir().mkpath(s.out));
        {
            QFile f(QDir(s.out).filePath(QStringLiteral("run.json")));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(
                R"({"total_steps":10,"final":{"status":"stopped","steps":1,"total_steps":10,"exit_reason":"old","finished_at":1000}})");
        }
        TrainingRun quiet(s);
        QVERIFY(quiet.start(fake("echo 'not fec train' >&2\n")));
        QTRY_VERIFY_WITH_TIMEOUT(!quiet.isActive(), 10000);
        QCOMPARE(quiet.status(), RunStatus::Finished);
        QVERIFY2(quiet.message().contains(QLatin1String("no final record")), qPrintable(quiet.message()));

        TrainingRun failing(spec());
        QVERIFY(failing.start(fake(R"(
final failed 3 0 10 null "image 40: truncated file"
echo "fec: something else entirely" >&2
exit 2
)")));
        QTRY_COMPARE_WITH_TIMEOUT(failing.status(), RunStatus::Failed, 10000);
        QVERIFY2(failing.message().contains(QLatin1String("exit code 2: image 40: truncated file")),
                 qPrintable(failing.message()));
    }

    // Another process owns the folder (RUN/.lock, flock, its pid inside): the run is refused
    // before anything is launched or written there, with the folder and the owner in the message.
    void refusedWhileAnotherProcessOwnsTheFolder()
    {
        TrainingSpec s = spec();
        QVERIFY(QDir().mkpath(s.out));
        const QByteArray lockPath = QDir(s.out).filePath(QStringLiteral(".lock")).toLocal8Bit();
        const int fd = ::open(lockPath.constData(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        QVERIFY(fd >= 0);
        QCOMPARE(::flock(fd, LOCK_EX | LOCK_NB), 0);
        const QByteArray pid = QByteArray::number(static_cast<qint64>(::getpid())) + '\n';
        QCOMPARE(::write(fd, pid.constData(), static_cast<size_t>(pid.size())), static_cast<ssize_t>(pid.size()));
        const QString marker = m_dir.filePath(QStringLiteral("launched-%1").arg(m_count));
        TrainingRun run(s);
        QVERIFY(!run.start(fake(QStringLiteral("touch '%1'\n").arg(marker).toUtf8())));
        ::close(fd);
        QCOMPARE(run.status(), RunStatus::Failed);
        QVERIFY2(
            run.message().contains(QStringLiteral("the run folder %1 is in use by another training process (pid %2)")
                                       .arg(s.out)
                                       .arg(::getpid())),
            qPrintable(run.message()));
        QVERIFY(!run.isActive());
        QTest::qWait(300);
        QVERIFY(!QFile::exists(marker));
        QVERIFY(!QFile::exists(run.logPath()));
        QVERIFY(!QFile::exists(QDir(s.out).filePath(QStringLiteral("explorer-process.json"))));
    }

    // The owner took the folder after the start was checked: `fec train` exits non-zero with the
    // refusal while the owner keeps logging into the same train.log. The run says who owns the
    // folder, not the owner's latest progress line.
    void refusalAtExitNamesTheOwner()
    {
        const QString exe = fake(R"(
flock -n "$out/.lock" sh -c 'echo $$ > "$1/.lock"; i=0; while [ $i -lt 40 ]; do echo "epoch 1/9  step $i/99  loss 1.0" >> "$1/train.log"; i=$((i+1)); sleep 0.1; done' sh "$out" &
while [ ! -s "$out/.lock" ]; do sleep 0.05; done
sleep 0.3
echo "fec: the run folder $out is in use by another training process (pid $(cat "$out/.lock")): wait for it to end or stop it, or choose another --out" >&2
sleep 0.3
exit 2
)");
        TrainingRun run(spec());
        QVERIFY(run.start(exe));
        QTRY_COMPARE_WITH_TIMEOUT(run.status(), RunStatus::Failed, 10000);
        QFile lock(QDir(run.dir()).filePath(QStringLiteral(".lock")));
        QVERIFY(lock.open(QIODevice::ReadOnly));
        const qint64 owner = lock.readAll().trimmed().toLongLong();
        QVERIFY(owner > 0);
        QCOMPARE(run.exitCode(), 2);
        const QString expected =
            QStringLiteral("exit code 2: the run folder %1 is in use by another training process (pid %2)")
                .arg(run.dir())
                .arg(owner);
        QVERIFY2(run.message().contains(expected), qPrintable(run.message()));
        ::kill(static_cast<pid_t>(owner), SIGTERM);
    }

    // Another explorer started `fec train` on the folder between this start's check and its
    // launch: its explorer-process.json must survive ours being refused, or no later session finds
    // that run again.
    void anotherExplorersProcessFileSurvivesARefusedStart()
    {
        TrainingSpec s = spec();
        QVERIFY(QDir().mkpath(s.out));
        // Stands for the other explorer's `fec train --out RUN` (alive, "train" and the folder in
        // its command line); it holds no lock, so this start passes its check.
        QProcess other;
        other.start(QStringLiteral("/bin/sh"),
                    {QStringLiteral("-c"), QStringLiteral("sleep 20; true"), QStringLiteral("train"), s.out});
        QVERIFY(other.waitForStarted());
        const qint64 otherPid = other.processId();
        const QString processFile = QDir(s.out).filePath(QStringLiteral("explorer-process.json"));
        {
            QFile f(processFile);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QStringLiteral(R"({"pid":%1,"command":["fec","train"]})").arg(otherPid).toUtf8());
        }
        TrainingRun run(s);
        QVERIFY(run.start(fake(R"(sleep 0.3
echo "fec: the run folder $out is in use by another training process" >&2
exit 2
)")));
        QTRY_COMPARE_WITH_TIMEOUT(run.status(), RunStatus::Failed, 10000);
        QFile f(processFile);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const auto pid =
            static_cast<qint64>(QJsonDocument::fromJson(f.readAll()).object().value(QStringLiteral("pid")).toDouble());
        QCOMPARE(pid, otherPid);
        QString error;
        std::unique_ptr<TrainingRun> reopened(TrainingRun::open(s.out, &error));
        QVERIFY2(reopened, qPrintable(error));
        QCOMPARE(reopened->status(), RunStatus::Running);
        reopened.reset();
        other.kill();
        other.waitForFinished();
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
        QVERIFY(!a.contains(QLatin1String("--mixup")));  // defaults are not repeated
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
