// The built fec-explorer --screenshot for every view, under an X display (Xvfb): exit status 0,
// a PNG of the whole window that is not blank; and a non-zero exit naming the problem for a bad
// checkpoint and an unreadable image.

#include <QDir>
#include <QFile>
#include <QImage>
#include <QProcess>
#include <QSet>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "reference.h"

namespace {

QString ref(const char* relative)
{
    return QString::fromStdString(fec::test::referencePath(relative));
}

struct Run {
    int exitCode = -1;
    QString output;
};

// Runs fec-explorer on the X display; without one, through xvfb-run.
Run runExplorer(const QStringList& args)
{
    QProcess process;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("xcb"));
    env.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
    process.setProcessEnvironment(env);
    process.setProcessChannelMode(QProcess::MergedChannels);
    if (qEnvironmentVariableIsEmpty("DISPLAY"))
        process.start(QStringLiteral("xvfb-run"),
                      QStringList{QStringLiteral("-a"), QStringLiteral("-s"), QStringLiteral("-screen 0 1400x900x24"),
                                  QStringLiteral(FEC_EXPLORER_EXE)} +
                          args);
    else
        process.start(QStringLiteral(FEC_EXPLORER_EXE), args);
    Run run;
    if (!process.waitForStarted(20000) || !process.waitForFinished(200000)) {
        process.kill();
        process.waitForFinished(5000);
        run.output = QStringLiteral("did not finish: ") + QString::fromLocal8Bit(process.readAll());
        return run;
    }
    run.exitCode = process.exitStatus() == QProcess::NormalExit ? process.exitCode() : -2;
    run.output = QString::fromLocal8Bit(process.readAll());
    return run;
}

}  // namespace

class TestScreenshot : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        if (!fec::test::referenceExists("fec_small_seed0.pth.tar") || !fec::test::referenceExists("inputs/chelsea.png"))
            QSKIP("reference fixtures missing (set FEC_REFERENCE_DIR)");
        if (qEnvironmentVariableIsEmpty("DISPLAY") &&
            QStandardPaths::findExecutable(QStringLiteral("xvfb-run")).isEmpty())
            QSKIP("no X display and no xvfb-run: the 3D view needs GLX");
        QVERIFY(m_dir.isValid());
    }

    void everyView_data()
    {
        QTest::addColumn<QString>("view");
        for (const char* v : {"pyramid", "compare", "hierarchy", "heads", "statistics", "3d", "evidence"})
            QTest::newRow(v) << QString::fromLatin1(v);
    }

    void everyView()
    {
        QFETCH(QString, view);
        const QString out = m_dir.filePath(view + QStringLiteral(".png"));
        const Run run =
            runExplorer({QStringLiteral("--checkpoint"), ref("fec_small_seed0.pth.tar"), QStringLiteral("--view"), view,
                         QStringLiteral("--screenshot"), out, ref("inputs/chelsea.png")});
        QVERIFY2(run.exitCode == 0, qPrintable(run.output));
        QImage image(out);
        QVERIFY2(!image.isNull(), qPrintable(out));
        QCOMPARE(image.size(), QSize(1400, 900));
        QSet<QRgb> colours;
        for (int y = 0; y < image.height(); y += 3)
            for (int x = 0; x < image.width(); x += 3)
                colours.insert(image.pixel(x, y) & 0xffffff);
        QVERIFY2(colours.size() > 200, qPrintable(QStringLiteral("only %1 distinct colours").arg(colours.size())));
        if (qEnvironmentVariableIsSet("FEC_SCREENSHOT_DIR"))
            QFile::copy(out, QDir(qEnvironmentVariable("FEC_SCREENSHOT_DIR")).filePath(view + QStringLiteral(".png")));
    }

    // `fec-explorer --atlas DIR --view concepts --screenshot FILE` on an atlas that `fec concepts`
    // wrote (32 Fashion-MNIST test images, the default model, K = 3).
    void conceptsViewOfAnAtlas()
    {
        const QString model = QStringLiteral(FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar");
        const QString fashion = QStringLiteral("/usr/share/datasets/fashion-mnist");
        QVERIFY2(QFile::exists(fashion + QStringLiteral("/t10k-labels-idx1-ubyte.gz")) ||
                     QFile::exists(fashion + QStringLiteral("/t10k-labels-idx1-ubyte")),
                 "Fashion-MNIST is missing: scripts/install-deps.sh installs dataset-fashion-mnist");
        const QString atlas = m_dir.filePath(QStringLiteral("atlas"));
        QProcess fec;
        fec.setProcessChannelMode(QProcess::MergedChannels);
        fec.start(QStringLiteral(FEC_EXE),
                  {QStringLiteral("--threads"), QStringLiteral("2"), QStringLiteral("concepts"),
                   QStringLiteral("--checkpoint"), model, QStringLiteral("--data"), fashion, QStringLiteral("--out"),
                   atlas, QStringLiteral("--limit"), QStringLiteral("32"), QStringLiteral("--k"), QStringLiteral("3")});
        QVERIFY(fec.waitForFinished(120000));
        QVERIFY2(fec.exitCode() == 0, fec.readAll().constData());

        const QString out = m_dir.filePath(QStringLiteral("concepts.png"));
        Run run =
            runExplorer({QStringLiteral("--checkpoint"), model, QStringLiteral("--atlas"), atlas,
                         QStringLiteral("--view"), QStringLiteral("concepts"), QStringLiteral("--screenshot"), out});
        QVERIFY2(run.exitCode == 0, qPrintable(run.output));
        QImage image(out);
        QVERIFY2(!image.isNull(), qPrintable(out));
        QSet<QRgb> colours;
        for (int y = 0; y < image.height(); y += 3)
            for (int x = 0; x < image.width(); x += 3)
                colours.insert(image.pixel(x, y) & 0xffffff);
        QVERIFY2(colours.size() > 200, qPrintable(QStringLiteral("only %1 distinct colours").arg(colours.size())));

        // A folder that is not there: a non-zero exit naming it, and no screenshot.
        run = runExplorer({QStringLiteral("--checkpoint"), model, QStringLiteral("--atlas"),
                           m_dir.filePath(QStringLiteral("no-atlas-here")), QStringLiteral("--screenshot"),
                           m_dir.filePath(QStringLiteral("bad3.png"))});
        QVERIFY2(run.exitCode > 0, qPrintable(run.output));
        QVERIFY2(run.output.contains(QStringLiteral("no-atlas-here")), qPrintable(run.output));
        QVERIFY(!QFile::exists(m_dir.filePath(QStringLiteral("bad3.png"))));
    }

    void failuresExitNonZero()
    {
        const QString corrupt = m_dir.filePath(QStringLiteral("corrupt.pth.tar"));
        QFile f(corrupt);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("not a checkpoint at all");
        f.close();
        Run run = runExplorer({QStringLiteral("--checkpoint"), corrupt, QStringLiteral("--screenshot"),
                               m_dir.filePath(QStringLiteral("bad1.png")), ref("inputs/chelsea.png")});
        QVERIFY2(run.exitCode > 0, qPrintable(run.output));
        QVERIFY2(run.output.contains(QStringLiteral("corrupt.pth.tar")), qPrintable(run.output));
        QVERIFY(!QFile::exists(m_dir.filePath(QStringLiteral("bad1.png"))));

        run = runExplorer({QStringLiteral("--checkpoint"), ref("tiny_seed0.pth.tar"), QStringLiteral("--screenshot"),
                           m_dir.filePath(QStringLiteral("bad2.png")),
                           m_dir.filePath(QStringLiteral("nothing-here.jpg"))});
        QVERIFY2(run.exitCode > 0, qPrintable(run.output));
        QVERIFY2(run.output.contains(QStringLiteral("nothing-here.jpg")), qPrintable(run.output));
        QVERIFY(!QFile::exists(m_dir.filePath(QStringLiteral("bad2.png"))));
    }

private:
    QTemporaryDir m_dir;
};

QTEST_MAIN(TestScreenshot)
#include "test_screenshot.moc"
