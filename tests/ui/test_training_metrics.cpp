// The training panel's reading of `fec train` metrics: lines parse (and garbage does not), a
// partial last line waits for its newline, a resumed run's redone steps replace the old ones, and
// the file reader follows appends and an atomic replacement.

#include <QFile>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "fec/ui/training_metrics.h"

using namespace fec::ui;

namespace {

const QByteArray kTrainLine =
    R"({"phase":"train","epoch":0,"step":3,"total_steps":16,"loss":2.35,"lr":0.00025,"top1":6.25,)"
    R"("images_per_s":1594.5,"time":1795686637.77,"elapsed_s":0.155})";
const QByteArray kValLine =
    R"({"phase":"val","epoch":1,"step":16,"total_steps":16,"loss":2.0877,"lr":1e-05,"top1":31.25,"top5":75.0,)"
    R"("ema_loss":2.1,"ema_top1":30.5,"ema_top5":74.0,"images_per_s":0.0,"time":1795686638.15,"elapsed_s":0.536})";

TrainingMetric metric(TrainingMetric::Phase phase, qint64 step, int epoch, double elapsed = 0, qint64 total = 100)
{
    TrainingMetric m;
    m.phase = phase;
    m.step = step;
    m.epoch = epoch;
    m.totalSteps = total;
    m.loss = 1.0 / (step + 1);
    m.elapsedS = elapsed;
    return m;
}

void append(const QString& path, const QByteArray& bytes)
{
    QFile f(path);
    QVERIFY(f.open(QIODevice::Append));
    QCOMPARE(f.write(bytes), bytes.size());
}

}  // namespace

class TestTrainingMetrics : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void parsesTrainAndValLines()
    {
        const auto train = parseMetricLine(kTrainLine);
        QVERIFY(train);
        QVERIFY(train->isTrain());
        QCOMPARE(train->step, 3);
        QCOMPARE(train->totalSteps, 16);
        QCOMPARE(train->epoch, 0);
        QCOMPARE(train->loss, 2.35);
        QCOMPARE(train->lr, 0.00025);
        QVERIFY(train->top1);
        QCOMPARE(*train->top1, 6.25);
        QVERIFY(!train->top5);
        QVERIFY(!train->emaTop1);
        QCOMPARE(train->imagesPerSecond, 1594.5);

        const auto val = parseMetricLine("  " + kValLine + "\r\n");
        QVERIFY(val);
        QVERIFY(!val->isTrain());
        QCOMPARE(val->epoch, 1);
        QCOMPARE(*val->top5, 75.0);
        QCOMPARE(*val->emaTop1, 30.5);
        QCOMPARE(*val->emaLoss, 2.1);
    }

    void rejectsGarbage_data()
    {
        QTest::addColumn<QByteArray>("line");
        QTest::newRow("empty") << QByteArray("");
        QTest::newRow("text") << QByteArray("epoch 1/2  step 3/16  loss 2.35");
        QTest::newRow("truncated json") << kTrainLine.left(40);
        QTest::newRow("array") << QByteArray("[1,2,3]");
        QTest::newRow("no phase") << QByteArray(R"({"step":1,"loss":2})");
        QTest::newRow("unknown phase") << QByteArray(R"({"phase":"test","step":1,"loss":2})");
        QTest::newRow("string step") << QByteArray(R"({"phase":"train","step":"1","loss":2})");
        QTest::newRow("no loss") << QByteArray(R"({"phase":"train","step":1})");
        QTest::newRow("negative step") << QByteArray(R"({"phase":"train","step":-4,"loss":2})");
        QTest::newRow("binary") << QByteArray("\x00\xff\xfe{\"phase\"", 10);
    }

    void rejectsGarbage()
    {
        QFETCH(QByteArray, line);
        QString why;
        QVERIFY(!parseMetricLine(line, &why));
        QVERIFY2(!why.isEmpty(), "a rejected line says why");
    }

    void splitterHoldsPartialLines()
    {
        LineSplitter s;
        const QByteArray stream = kTrainLine + "\n" + kValLine + "\n";
        // Byte by byte: each line appears exactly when its newline does.
        QList<QByteArray> lines;
        for (int i = 0; i < stream.size(); ++i) {
            const auto got = s.feed(stream.mid(i, 1));
            if (i == kTrainLine.size()) {
                QCOMPARE(got.size(), 1);
                QCOMPARE(got.first(), kTrainLine);
            } else if (i == stream.size() - 1) {
                QCOMPARE(got.size(), 1);
                QCOMPARE(got.first(), kValLine);
            } else {
                QVERIFY(got.isEmpty());
            }
        }
        QVERIFY(s.pending().isEmpty());

        // Several lines and a partial one in a single chunk.
        const auto got = s.feed("a\r\nb\nc");
        QCOMPARE(got, (QList<QByteArray>{"a", "b"}));
        QCOMPARE(s.pending(), QByteArray("c"));
        QCOMPARE(s.feed("d\n"), QList<QByteArray>{"cd"});
    }

    void splitterDropsOverlongLines()
    {
        LineSplitter s(16);
        QVERIFY(s.feed(QByteArray(10, 'x')).isEmpty());
        QVERIFY(s.feed(QByteArray(10, 'x')).isEmpty());  // 20 > 16: dropped, memory bounded
        QVERIFY(s.pending().isEmpty());
        QCOMPARE(s.feed("yyy\nok\n"), QList<QByteArray>{"ok"});
    }

    void historyAppendsInOrder()
    {
        MetricHistory h;
        QVERIFY(!h.add(metric(TrainingMetric::Phase::Train, 10, 0)));
        QVERIFY(!h.add(metric(TrainingMetric::Phase::Train, 20, 0)));
        QVERIFY(!h.add(metric(TrainingMetric::Phase::Val, 20, 0)));
        QVERIFY(!h.add(metric(TrainingMetric::Phase::Train, 30, 1)));
        QCOMPARE(h.train().size(), 3);
        QCOMPARE(h.val().size(), 1);
        QCOMPARE(h.lastStep(), 30);
        QCOMPARE(h.lastEpoch(), 1);
        QCOMPARE(h.totalSteps(), 100);
    }

    void historyRewindsOnResume()
    {
        // Stopped at step 35 after the checkpoint at 20 (end of epoch 0): the resumed run logs
        // from step 30 again; the lines after 20 are replaced, not duplicated.
        MetricHistory h;
        for (qint64 step : {10, 20})
            h.add(metric(TrainingMetric::Phase::Train, step, 0));
        h.add(metric(TrainingMetric::Phase::Val, 20, 0));
        h.add(metric(TrainingMetric::Phase::Train, 30, 1));
        QVERIFY(!h.add(metric(TrainingMetric::Phase::Train, 35, 1)));
        QVERIFY(h.add(metric(TrainingMetric::Phase::Train, 30, 1)));
        QCOMPARE(h.train().size(), 3);
        QCOMPARE(h.train().last().step, 30);
        QCOMPARE(h.val().size(), 1);

        // A validation a stop interrupted is redone at the same step: it replaces only the val line.
        QVERIFY(h.add(metric(TrainingMetric::Phase::Val, 20, 0)));
        QCOMPARE(h.val().size(), 1);
        QCOMPARE(h.train().size(), 2);  // step 30 came after that validation
    }

    void etaFromTheRecentRate()
    {
        MetricHistory h;
        QCOMPARE(h.etaSeconds(), -1.0);
        h.add(metric(TrainingMetric::Phase::Train, 10, 0, 5.0));
        QCOMPARE(h.etaSeconds(), -1.0);  // one line: no rate yet
        h.add(metric(TrainingMetric::Phase::Train, 20, 0, 7.0));
        h.add(metric(TrainingMetric::Phase::Train, 30, 0, 9.0));
        // 20 steps in 4 s, 70 to go: 14 s.
        QCOMPARE(h.etaSeconds(), 14.0);
        // A resumed process restarts elapsed_s: only its own lines count.
        h.add(metric(TrainingMetric::Phase::Train, 40, 1, 1.0));
        h.add(metric(TrainingMetric::Phase::Train, 50, 1, 2.0));
        QCOMPARE(h.etaSeconds(), 5.0);
    }

    void bestTop1PrefersEma()
    {
        MetricHistory h;
        auto a = metric(TrainingMetric::Phase::Val, 10, 0);
        a.top1 = 40;
        auto b = metric(TrainingMetric::Phase::Val, 20, 1);
        b.top1 = 35;
        b.emaTop1 = 45;
        h.add(a);
        QCOMPARE(h.bestTop1(), 40.0);
        h.add(b);
        QCOMPARE(h.bestTop1(), 45.0);
    }

    void fileTailFollowsAppendsAndReplacement()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString path = dir.filePath(QStringLiteral("metrics.jsonl"));
        MetricsFileTail tail(path);
        QVERIFY(tail.poll().metrics.isEmpty());  // no file yet

        append(path, kTrainLine + "\n" + kTrainLine.left(30));
        auto u = tail.poll();
        QCOMPARE(u.metrics.size(), 1);
        QVERIFY(!u.restarted);
        QVERIFY(tail.poll().metrics.isEmpty());  // nothing new; the partial line waits

        append(path, kTrainLine.mid(30) + "\nnot json at all\n" + kValLine + "\n");
        u = tail.poll();
        QCOMPARE(u.metrics.size(), 2);
        QCOMPARE(u.rejected, 1);
        QVERIFY(!u.lastRejection.isEmpty());
        QVERIFY(!u.metrics[1].isTrain());

        // A resume rewrites the file atomically (a new file, here shorter): read again from the start.
        const QString temp = path + QStringLiteral(".tmp");
        QFile::remove(temp);
        append(temp, (kTrainLine + "\n").repeated(6));  // longer than before: only the new inode tells
        QVERIFY(QFile::remove(path));
        QVERIFY(QFile::rename(temp, path));
        u = tail.poll();
        QVERIFY(u.restarted);
        QCOMPARE(u.metrics.size(), 6);

        // Truncated in place (a fresh run in the same folder).
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
        f.close();
        u = tail.poll();
        QVERIFY(u.restarted);
        QVERIFY(u.metrics.isEmpty());
    }
};

QTEST_APPLESS_MAIN(TestTrainingMetrics)
#include "test_training_metrics.moc"
