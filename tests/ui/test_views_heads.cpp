// HeadsView: one tile per head of the chosen block, the block selector, the agreement scores.

#include <cmath>
#include <set>

#include <ATen/ATen.h>

#include <QComboBox>
#include <QDir>
#include <QSet>
#include <QTemporaryDir>
#include <QSignalSpy>
#include <QTest>

#include "fec/ui/heads_view.h"
#include "views_fixture.h"

using namespace fec;
using fec::ui::HeadsView;

class TestHeadsView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        if (!test::viewFixturesPresent())
            QSKIP("reference fixtures not found: set FEC_REFERENCE_DIR to the folder with tiny_seed0.pth.tar");
        m_tiny = test::makeExplainResult();
        if (test::viewFixturesPresent("fec_small_seed0.pth.tar"))
            m_small = test::makeExplainResult("fec_small_seed0.pth.tar");
    }

    void emptyViewHasNoTiles()
    {
        HeadsView view;
        QCOMPARE(view.tileCount(), 0);
        QCOMPARE(view.block(), -1);
        QSignalSpy spy(&view, &HeadsView::blockChanged);
        view.setBlock(0);
        QCOMPARE(spy.count(), 0);
    }

    void tilesFollowTheBlocksHeads_data()
    {
        QTest::addColumn<QString>("model");
        QTest::newRow("tiny") << "tiny";
        QTest::newRow("fec_small") << "fec_small";
    }

    void tilesFollowTheBlocksHeads()
    {
        QFETCH(QString, model);
        const auto result = model == "tiny" ? m_tiny : m_small;
        if (!result)
            QSKIP("fec_small_seed0.pth.tar not found in the reference folder");
        HeadsView view;
        view.setResult(result);
        QCOMPARE(view.block(), 0);
        QVERIFY(result->partitions.size() >= 4);
        std::set<int> headCounts;
        for (int b = 0; b < static_cast<int>(result->partitions.size()); ++b) {
            view.setBlock(b);
            const auto& part = result->partitions[b];
            QCOMPARE(view.block(), b);
            QCOMPARE(view.tileCount(), part.heads);
            headCounts.insert(part.heads);
            // Each tile is the model input with that head's partition drawn over it.
            const QImage tile = view.tileImage(0);
            QCOMPARE(tile.size(), QSize(224, 224));
            QVERIFY(view.tileTitle(0).startsWith("Head 0"));
        }
        if (model == "fec_small")
            QCOMPARE(headCounts, (std::set<int>{4, 8}));
    }

    void setBlockEmitsBlockChanged()
    {
        HeadsView view;
        view.setResult(m_tiny);
        QSignalSpy spy(&view, &HeadsView::blockChanged);
        view.setBlock(2);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.takeFirst().at(0).toInt(), 2);
        view.setBlock(2);  // unchanged: no signal
        QCOMPARE(spy.count(), 0);
        view.setBlock(99);  // out of range: ignored
        QCOMPARE(spy.count(), 0);
        QCOMPARE(view.block(), 2);

        // The user's choice in the selector does the same.
        auto* combo = view.findChild<QComboBox*>();
        QVERIFY(combo);
        QCOMPARE(combo->count(), static_cast<int>(m_tiny->partitions.size()));
        QCOMPARE(combo->currentIndex(), 2);
        const auto& part = m_tiny->partitions[1];
        QCOMPARE(combo->itemText(1), QString("Stage %1 · block %2 (%3x%4, %5 centres)")
                                         .arg(part.stage)
                                         .arg(part.block)
                                         .arg(part.gridH)
                                         .arg(part.gridW)
                                         .arg(part.centres));
        combo->setCurrentIndex(1);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.takeFirst().at(0).toInt(), 1);
        QCOMPARE(view.block(), 1);
    }

    void agreementIsTheMeanAgainstOtherHeads()
    {
        const auto result = m_small ? m_small : m_tiny;
        HeadsView view;
        view.setResult(result);
        for (int b = 0; b < static_cast<int>(result->partitions.size()); b += 3) {
            view.setBlock(b);
            const auto& part = result->partitions[b];
            const auto a = part.agreement.to(at::kDouble);
            for (int h = 0; h < part.heads; ++h) {
                double sum = 0;
                for (int j = 0; j < part.heads; ++j)
                    if (j != h)
                        sum += a[h][j].item<double>();
                const double expected = sum / (part.heads - 1);
                QVERIFY(std::abs(view.meanAgreement(h) - expected) < 1e-9);
                QVERIFY(view.tileTitle(h).contains(QString::number(expected, 'f', 2)));
            }
            // Different partitions draw different tiles.
            if (a[0][1].item<double>() < 0.999)
                QVERIFY(view.tileImage(0) != view.tileImage(1));
        }
    }

    void newResultKeepsAValidBlock()
    {
        HeadsView view;
        view.setResult(m_tiny);
        view.setBlock(3);
        QSignalSpy spy(&view, &HeadsView::blockChanged);
        view.setResult(m_tiny);
        QCOMPARE(view.block(), 3);
        QCOMPARE(spy.count(), 0);
        view.setResult(nullptr);
        QCOMPARE(view.tileCount(), 0);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.takeFirst().at(0).toInt(), -1);
    }

    // The colour bar under the agreement matrix: "0" and "1" at its ends and the caption on a line
    // of its own, whatever the number of heads and the font (a larger font once made the caption
    // run into both end labels: "0djusted Rand index1").
    void colourLegendTextDoesNotOverlap_data()
    {
        QTest::addColumn<int>("pointSize");
        QTest::addColumn<QSize>("size");
        QTest::newRow("default font") << 0 << QSize(1100, 620);
        QTest::newRow("large font") << 15 << QSize(1100, 620);
        QTest::newRow("large font, low window") << 15 << QSize(900, 420);
    }

    void colourLegendTextDoesNotOverlap()
    {
        QFETCH(int, pointSize);
        QFETCH(QSize, size);
        const auto result = m_small ? m_small : m_tiny;
        HeadsView view;
        if (pointSize > 0) {
            QFont font = view.font();
            font.setPointSize(pointSize);
            view.setFont(font);
        }
        view.resize(size);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QVERIFY(view.colourLegend().bar.isEmpty());  // no result, no legend
        view.setResult(result);
        for (int b = 0; b < static_cast<int>(result->partitions.size()); ++b) {
            view.setBlock(b);
            QCoreApplication::processEvents();
            const auto legend = view.colourLegend();
            const QString where = QString("block %1").arg(b);
            QVERIFY2(!legend.bar.isEmpty(), qPrintable(where));
            QCOMPARE(legend.captionText, QString("adjusted Rand index"));
            // Every part is inside the matrix and whole: the caption is not elided or cut.
            for (const QRect& r : {legend.bar, legend.low, legend.high, legend.caption})
                QVERIFY2(legend.matrix.contains(r), qPrintable(where));
            const QFontMetrics fm(view.font());
            QVERIFY(legend.caption.width() >= fm.horizontalAdvance(legend.captionText));
            QVERIFY(legend.low.width() >= fm.horizontalAdvance("0"));
            QVERIFY(legend.high.width() >= fm.horizontalAdvance("1"));
            // No two texts overlap, and none overlaps the bar.
            QVERIFY2(!legend.caption.intersects(legend.low), qPrintable(where));
            QVERIFY2(!legend.caption.intersects(legend.high), qPrintable(where));
            QVERIFY2(!legend.low.intersects(legend.high), qPrintable(where));
            for (const QRect& r : {legend.low, legend.high, legend.caption})
                QVERIFY2(!r.intersects(legend.bar), qPrintable(where));
            // The end labels mark the bar's ends.
            QCOMPARE(legend.low.left(), legend.bar.left());
            QCOMPARE(legend.high.right(), legend.bar.right());
        }
    }

    // The view draws at a window's size; FEC_VIEWS_SCREENSHOTS keeps the picture.
    void viewDraws()
    {
        QTemporaryDir temp;
        const QString dir = qEnvironmentVariableIsEmpty("FEC_VIEWS_SCREENSHOTS")
                                ? temp.path()
                                : qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS");
        HeadsView view;
        view.resize(1100, 620);
        view.setResult(m_small ? m_small : m_tiny);
        view.setBlock(m_small ? 7 : 1);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        const QImage picture = view.grab().toImage();
        QSet<QRgb> colours;
        for (int y = 0; y < picture.height(); y += 2)
            for (int x = 0; x < picture.width(); x += 2)
                colours.insert(picture.pixel(x, y));
        QVERIFY2(colours.size() > 20, "the view drew next to nothing");
        QVERIFY(picture.save(QDir(dir).filePath("heads_view.png")));
    }

private:
    ui::ExplainResultPtr m_tiny, m_small;
};

QTEST_MAIN(TestHeadsView)
#include "test_views_heads.moc"
