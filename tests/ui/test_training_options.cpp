// The Training dock and `fec train` agree on every option: the dock's form covers every flag of
// the options table, the command line it builds parses in the real `fec train` (--dry-run) to
// the options the form holds, and run.json's options read back into the same form.

#include <QDir>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "fec/train/train_options.h"
#include "fec/ui/training_run.h"

using namespace fec::ui;

namespace {

// Every option of the form at a value other than fec train's default.
TrainingSpec everythingChanged(const QString& root)
{
    TrainingSpec s;
    s.data = root;
    s.val = root;
    s.trainLimit = 300;
    s.valLimit = 60;
    s.out = QDir(root).filePath(QStringLiteral("run"));
    s.checkpoint = QDir(root).filePath(QStringLiteral("base.pth.tar"));
    s.weights = QStringLiteral("ema");
    s.freezeStages = QStringLiteral("0, 1");
    s.size = 64;
    s.epochs = 3;
    s.maxSteps = 17;
    s.batch = 8;
    s.accum = 2;
    s.lr = 2.5e-4;
    s.minLr = 3e-6;
    s.warmupLr = 2e-7;
    s.warmupEpochs = 0.5;
    s.weightDecay = 0.01;
    s.clip = 1.5;
    s.ema = 0.9998;
    s.dropPath = 0.2;
    s.smoothing = 0.05;
    s.mixup = 0.8;
    s.cutmix = 1.0;
    s.reprob = 0.125;
    s.hflip = 0.25;
    s.cropScale = 0.3;
    s.evalResize = QStringLiteral("crop");
    s.tensorboard = false;
    s.seed = 123456789;
    s.workers = 1;
    s.logEvery = 3;
    s.device = QStringLiteral("auto");
    return s;
}

}  // namespace

class TestTrainingOptions : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;

    // `fec train ARGS --dry-run`'s JSON, shaped like run.json (options + command).
    QJsonObject dryRun(const QStringList& arguments)
    {
        QProcess fec;
        fec.start(QStringLiteral(FEC_EXECUTABLE), arguments + QStringList{QStringLiteral("--dry-run")});
        if (!fec.waitForFinished(60000) || fec.exitCode() != 0) {
            qWarning("fec %s: %s", qPrintable(arguments.join(' ')), fec.readAllStandardError().constData());
            return {};
        }
        const auto printed = QJsonDocument::fromJson(fec.readAllStandardOutput()).object();
        QJsonObject command;
        for (const char* key : {"data", "val", "val_split", "train_limit", "val_limit"})
            command.insert(QLatin1String(key), printed.value(QLatin1String(key)));
        return QJsonObject{{QStringLiteral("options"), printed.value(QLatin1String("options"))},
                           {QStringLiteral("command"), command}};
    }

private Q_SLOTS:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        QVERIFY(QFileInfo(QStringLiteral(FEC_EXECUTABLE)).isExecutable());
    }

    void formCoversEveryFlag()
    {
        const QStringList a = everythingChanged(m_dir.path()).arguments();
        for (const auto& row : fec::train::trainOptionTable()) {
            if (row.flag.empty() || row.flag == "--resume")  // Resume builds its own command
                continue;
            QVERIFY2(a.contains(QString::fromStdString(row.flag)),
                     qPrintable(QStringLiteral("%1 is not in the dock's command: %2")
                                    .arg(QString::fromStdString(row.flag), a.join(QLatin1Char(' ')))));
        }
        // And a default form passes only what a user reads first.
        TrainingSpec d;
        d.data = m_dir.path();
        d.out = m_dir.filePath(QStringLiteral("d"));
        QCOMPARE(d.arguments().mid(5), (QStringList{"--arch", "fec_small", "--size", "224", "--batch", "64", "--epochs",
                                                    "10", "--lr", "0.001", "--seed", "0"}));
    }

    void argumentsParseBackInTheCli()
    {
        const TrainingSpec s = everythingChanged(m_dir.path());
        const QJsonObject run = dryRun(s.arguments());
        QVERIFY(!run.isEmpty());
        const TrainingSpec back = TrainingSpec::fromRunJson(run, s.out);
        QCOMPARE(back.arguments(), s.arguments());
        QCOMPARE(back.lr, s.lr);
        QCOMPARE(back.seed, s.seed);
        QCOMPARE(back.weights, QStringLiteral("ema"));
        QCOMPARE(back.evalResize, QStringLiteral("crop"));
        QCOMPARE(back.cropScale, 0.3);
        QVERIFY(!back.tensorboard);
        QCOMPARE(back.freezeStages, QStringLiteral("0,1"));
        QCOMPARE(back.trainLimit, 300);
    }

    void customArchitectureAndNoAugmentParseBack()
    {
        TrainingSpec s;
        s.data = m_dir.path();
        s.out = m_dir.filePath(QStringLiteral("custom"));
        s.arch = QStringLiteral("custom");
        s.layers = QStringLiteral("1,1,1,1");
        s.dims = QStringLiteral("16,32,64,96");
        s.heads = QStringLiteral("2,2,4,4");
        s.headDims = QStringLiteral("8,8,8,8");
        s.mlpRatios = QStringLiteral("2,2,2,2");
        s.proposals = QStringLiteral("2,2,1,1");
        s.size = 32;
        s.noAugment = true;
        s.hflip = 0;
        s.reprob = 0;
        const QJsonObject run = dryRun(s.arguments());
        QVERIFY(!run.isEmpty());
        const TrainingSpec back = TrainingSpec::fromRunJson(run, s.out);
        QVERIFY(back.noAugment);
        QCOMPARE(back.arch, QStringLiteral("custom"));
        QCOMPARE(back.dims, s.dims);
        QCOMPARE(back.arguments(), s.arguments());
    }
};

QTEST_MAIN(TestTrainingOptions)
#include "test_training_options.moc"
