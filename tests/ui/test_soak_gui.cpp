// Soak: image switches in the explorer (scripted, offscreen) keep resident memory flat (issue 6).
// Each switch picks the next sample in the gallery, as a click would, waits until the explanation
// is shown in every visible view, and moves to the next of four views, so that each view draws
// a new result every fourth switch. The CTest runs a reduced count; scripts/soak.sh runs 300.
//
// Environment: FEC_SOAK_SWITCHES (default 136), FEC_SOAK_CHECKPOINT (default: the shipped model in
// models/, else the reference tiny_seed0.pth.tar), FEC_SOAK_LOG (CSV: switch, seconds, rss_kib, peak_kib).

#include <utility>
#include <vector>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QTextStream>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/explain_result.h"
#include "fec/ui/image_gallery.h"
#include "fec/ui/main_window.h"

using namespace fec::ui;

namespace {

// Resident memory now and its peak so far (VmRSS, VmHWM), in MiB.
std::pair<double, double> residentMib()
{
    QFile status(QStringLiteral("/proc/self/status"));
    std::pair<double, double> use{0, 0};
    if (!status.open(QIODevice::ReadOnly))
        return use;
    for (const auto& line : status.readAll().split('\n')) {
        if (line.startsWith("VmRSS:"))
            use.first = line.mid(6).trimmed().split(' ').value(0).toDouble() / 1024.0;
        else if (line.startsWith("VmHWM:"))
            use.second = line.mid(6).trimmed().split(' ').value(0).toDouble() / 1024.0;
    }
    return use;
}

int envInt(const char* name, int fallback)
{
    bool ok = false;
    const int v = qEnvironmentVariableIntValue(name, &ok);
    return ok && v > 0 ? v : fallback;
}

}  // namespace

class TestSoakGui : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void residentMemoryStaysFlat()
    {
#ifndef Q_OS_LINUX
        QSKIP("reads resident memory from /proc/self/status");
#endif
        QString checkpoint = qEnvironmentVariable("FEC_SOAK_CHECKPOINT");
        if (checkpoint.isEmpty()) {
            // The shipped default model, as fec::defaultModelPath() finds it in the source tree.
            const QDir models(QStringLiteral(FEC_SOURCE_DIR "/models"));
            const auto found = models.entryList({QStringLiteral("*.pth.tar")}, QDir::Files, QDir::Name);
            if (!found.isEmpty())
                checkpoint = models.absoluteFilePath(found.first());
        }
        if (checkpoint.isEmpty()) {
            FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
            checkpoint = fec::test::refPath("tiny_seed0.pth.tar");
        }
        const QString samples = QStringLiteral(FEC_SOURCE_DIR "/resources/samples");
        QVERIFY(QDir(samples).exists());
        const int switches = envInt("FEC_SOAK_SWITCHES", 136);

        MainWindowOptions options;
        options.useSettings = false;
        options.interactive = false;
        options.loadDefaults = false;
        MainWindow window(options);
        window.resize(1400, 900);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QSignalSpy loaded(&window, &MainWindow::modelLoaded);
        window.openCheckpoint(checkpoint);
        QVERIFY2(loaded.wait(60000), qPrintable(window.lastError()));
        window.openFolder(samples);
        QStringList paths;
        for (const auto& name :
             QDir(samples).entryList({QStringLiteral("*.png"), QStringLiteral("*.jpg")}, QDir::Files))
            paths << QDir(samples).absoluteFilePath(name);
        QVERIFY(paths.size() > 4);
        QTRY_VERIFY_WITH_TIMEOUT(window.isSettled(), 60000);

        using V = MainWindow::View;
        const V views[] = {V::Pyramid, V::Hierarchy, V::Heads, V::Statistics};
        std::vector<double> rss, peak;
        QElapsedTimer clock;
        clock.start();
        QFile log(qEnvironmentVariable("FEC_SOAK_LOG"));
        QTextStream out(&log);
        if (!log.fileName().isEmpty() && log.open(QIODevice::WriteOnly | QIODevice::Truncate))
            out << "switch,seconds,rss_kib,peak_kib\n";
        for (int i = 0; i < switches; ++i) {
            // Never the image already shown: every switch is a new explanation.
            const QString path = paths[(i + 1) % paths.size()];
            window.showView(views[i % 4]);
            window.gallery()->setCurrentPath(path);
            QTRY_VERIFY2_WITH_TIMEOUT(
                window.currentResult() && window.currentResult()->imagePath == path && window.isSettled(),
                qPrintable(QStringLiteral("switch %1 (%2): %3").arg(i).arg(path, window.lastError())), 60000);
            QVERIFY2(window.lastError().isEmpty(), qPrintable(window.lastError()));
            const auto use = residentMib();
            rss.push_back(use.first);
            peak.push_back(use.second);
            if (log.isOpen())
                out << i + 1 << "," << clock.elapsed() / 1000.0 << "," << qRound(use.first * 1024) << ","
                    << qRound(use.second * 1024) << Qt::endl;
        }

        // Warm-up: the first two passes over the samples in every view (allocator caches, views'
        // pixmaps and layouts for each image size, fonts, oneDNN kernels per input shape).
        const size_t warm = std::min<size_t>(rss.size() - 1, 2 * static_cast<size_t>(paths.size()));
        double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (size_t i = warm; i < rss.size(); ++i) {
            n += 1;
            sx += i;
            sy += rss[i] * 1024;
            sxx += double(i) * i;
            sxy += i * rss[i] * 1024;
        }
        const double slope = n * sxx - sx * sx > 0 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : 0;
        const double growth = rss.back() - rss[warm];
        const double peakGrowth = peak.back() - peak[warm];
        qInfo("switches %d, RSS first %.1f MiB, after warm-up (%zu) %.1f MiB, last %.1f MiB, growth after warm-up "
              "%.1f MiB, slope %.1f KiB/switch; peak after warm-up %.1f MiB, at the end %.1f MiB; %.1f s",
              switches, rss.front(), warm, rss[warm], rss.back(), growth, slope, peak[warm], peak.back(),
              clock.elapsed() / 1000.0);
        // Resident memory after warm-up moves up and down by up to 25 MiB (glibc returns and takes back heap;
        // Qt's pixmap and font caches), so the bound is on the peak (VmHWM), which only a lasting increase
        // moves. Measured (docs/soak.md, tiny model, 2 cores): the peak rose 9.8 MiB between switch 35 and 300
        // (RSS ended between 12.5 MiB lower and 13.5 MiB higher than at switch 35 in three runs) and RSS
        // levelled off by ~500 in a 600-switch run. Holding on to every result would cost over 1 MiB per
        // switch (image, trace, pyramid, rendered views) and cross 30 MiB within 30 switches; 30 MiB is about
        // twice what was measured.
        QVERIFY2(peakGrowth < 30.0,
                 qPrintable(QStringLiteral("peak resident memory grew by %1 MiB after warm-up").arg(peakGrowth)));
    }
};

QTEST_MAIN(TestSoakGui)
#include "test_soak_gui.moc"
