// StatisticsView: the histograms count what the pyramid holds, and exports are real files.

#include <set>

#include <QDir>
#include <QFile>
#include <QImage>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include "fec/ui/statistics_view.h"
#include "views_fixture.h"

using namespace fec;
using fec::ui::StatisticsView;

namespace {

int distinctColours(const QImage& image)
{
    std::set<QRgb> colours;
    const QImage rgb = image.convertToFormat(QImage::Format_RGB32);
    for (int y = 0; y < rgb.height(); y += 3)
        for (int x = 0; x < rgb.width(); x += 3)
            colours.insert(rgb.pixel(x, y) & 0xf0f0f0);
    return static_cast<int>(colours.size());
}

void saveScreenshot(QWidget& widget, const QString& name)
{
    const QString dir = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS");
    if (!dir.isEmpty())
        widget.grab().save(QDir(dir).filePath(name));
}

}  // namespace

class TestStatisticsView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        if (!test::viewFixturesPresent())
            QSKIP("reference fixtures not found: set FEC_REFERENCE_DIR to the folder with tiny_seed0.pth.tar");
        m_result = test::makeExplainResult();
        QVERIFY(m_result->pyramid.levelCount() >= 2);
    }

    void withoutResultNothingIsPlotted()
    {
        StatisticsView view;
        QCOMPARE(view.plotCount(), 0);
        QVERIFY(view.plotTitles().isEmpty());
        QTemporaryDir dir;
        QVERIFY_THROWS_EXCEPTION(std::runtime_error, view.exportTo(dir.filePath("none.png")));
        QVERIFY(!QFile::exists(dir.filePath("none.png")));
    }

    void onePlotPerLevelStatisticAndBlock()
    {
        StatisticsView view;
        view.setResult(m_result);
        const int levels = m_result->pyramid.levelCount();
        // sizes and margins per level, empty clusters, head agreement (tiny: 2 heads per block)
        QCOMPARE(view.plotCount(), 2 * levels + 2);
        const QStringList titles = view.plotTitles();
        QCOMPARE(titles.size(), 2 * levels + 2);
        QVERIFY(titles[0].startsWith("Level 1 · segment sizes"));
        QVERIFY(titles[1].startsWith("Level 1 · assignment margins"));
        QVERIFY(titles.contains("Empty clusters per level"));
        QVERIFY(titles.contains("Mean head agreement per block"));
        // Without a block trace, the agreement plot says so and shows no data.
        auto noBlocks = std::make_shared<ui::ExplainResult>(*m_result);
        noBlocks->partitions.clear();
        view.setResult(noBlocks);
        QCOMPARE(view.plotCount(), 2 * levels + 1);
        view.setResult(nullptr);
        QCOMPARE(view.plotCount(), 0);
    }

    void histogramTotalsEqualSegmentsAndBlocks()
    {
        StatisticsView view;
        view.setResult(m_result);
        const auto& pyramid = m_result->pyramid;
        for (int l = 1; l <= pyramid.levelCount(); ++l) {
            const auto sizes = view.sizeHistogram(l);
            QCOMPARE(sizes.total(), static_cast<int>(pyramid.levels[l - 1].nonEmpty.size()));
            QCOMPARE(sizes.edges.size(), sizes.counts.size() + 1);
            // Every segment falls inside the bins, and bins are increasing.
            for (int id : pyramid.levelNodes[l - 1]) {
                QVERIFY(pyramid.nodes[id].pixels >= sizes.edges.front());
                QVERIFY(pyramid.nodes[id].pixels <= sizes.edges.back());
            }
            for (size_t i = 1; i < sizes.edges.size(); ++i)
                QVERIFY(sizes.edges[i] > sizes.edges[i - 1]);
            const auto margins = view.marginHistogram(l);
            QCOMPARE(margins.total(), static_cast<int>(pyramid.blockH * pyramid.blockW));
        }
        QCOMPARE(view.sizeHistogram(0).total(), 0);
        QCOMPARE(view.sizeHistogram(pyramid.levelCount() + 1).total(), 0);
    }

    void exportPngHasExpectedSizeAndContent()
    {
        StatisticsView view;
        view.resize(1000, 800);
        view.setResult(m_result);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        saveScreenshot(view, "statistics_view.png");
        QTemporaryDir dir;
        const QString path = dir.filePath("stats.png");
        view.exportTo(path);
        QImage image(path);
        QVERIFY(!image.isNull());
        QCOMPARE(image.size(), view.exportPixelSize());
        QVERIFY(image.width() >= 1000);
        QVERIFY(distinctColours(image) >= 4);  // text, axes, bars, background
        // Exports are light whatever the palette: the corner is white.
        QCOMPARE(QColor(image.pixel(2, 2)), QColor(Qt::white));
        // No temporary files left behind.
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files).size(), 1);
        if (const QString shots = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS"); !shots.isEmpty())
            view.exportTo(QDir(shots).filePath("statistics_export.png"));
    }

    void exportPdfIsAPdf()
    {
        StatisticsView view;
        view.setResult(m_result);
        QTemporaryDir dir;
        const QString path = dir.filePath("stats.pdf");
        view.exportTo(path);
        QFile file(path);
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QByteArray bytes = file.readAll();
        QVERIFY(bytes.startsWith("%PDF"));
        QVERIFY(bytes.size() > 2000);
        QVERIFY(bytes.contains("%%EOF"));
    }

    void exportFailuresNameTheFile()
    {
        StatisticsView view;
        view.setResult(m_result);
        QTemporaryDir dir;
        try {
            view.exportTo(dir.filePath("stats.bmp"));
            QFAIL("an unknown extension must throw");
        } catch (const std::runtime_error& e) {
            QVERIFY(QString(e.what()).contains("stats.bmp"));
        }
        try {
            view.exportTo(dir.filePath("missing/stats.png"));
            QFAIL("a missing folder must throw");
        } catch (const std::runtime_error& e) {
            QVERIFY(QString(e.what()).contains("missing/stats.png"));
        }
    }

    void darkPaletteRepaintsPlots()
    {
        StatisticsView view;
        view.resize(900, 700);
        view.setResult(m_result);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QPalette dark;
        dark.setColor(QPalette::Window, QColor(30, 30, 34));
        dark.setColor(QPalette::Base, QColor(22, 22, 26));
        dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
        dark.setColor(QPalette::Text, QColor(230, 230, 230));
        view.setPalette(dark);
        QApplication::processEvents();
        saveScreenshot(view, "statistics_view_dark.png");
        const QImage grab = view.grab().toImage();
        // Mostly dark, with light text: count bright and dark pixels.
        int darkPixels = 0, lightPixels = 0;
        for (int y = 0; y < grab.height(); y += 2)
            for (int x = 0; x < grab.width(); x += 2) {
                const int v = qGray(grab.pixel(x, y));
                darkPixels += v < 60;
                lightPixels += v > 180;
            }
        QVERIFY(darkPixels > 10 * lightPixels);
        QVERIFY(lightPixels > 50);
    }

private:
    ui::ExplainResultPtr m_result;
};

QTEST_MAIN(TestStatisticsView)
#include "test_views_statistics.moc"
