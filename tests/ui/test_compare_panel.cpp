// The compare view: each pane shows the source it was given (level, K-means k, encoding head, a
// second checkpoint), panes zoom together, and the difference mode marks exactly the pixels whose
// overlap-matched segment changed.

#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "explorer_fixture.h"
#include "fec/imaging/kmeans.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/highlight.h"
#include "fec/ui/image_view.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/view_sync.h"

using namespace fec::ui;
using Kind = ComparePanel::Source::Kind;

class TestComparePanel : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        FEC_REQUIRE_FIXTURE("tiny_seed0_legacy.pth");
        m_result = fec::test::explain(*fec::test::loadBundle());
        m_second = fec::test::explain(*fec::test::loadBundle("tiny_seed0_legacy.pth"));
        QVERIFY(m_result && m_second);
    }

    void segmentDifferenceMatchesByOverlap()
    {
        // a: two segments (left 0, right 1); b: the same split, renamed, plus one pixel moved.
        auto a = at::zeros({4, 4}, at::kInt);
        auto b = at::full({4, 4}, 7, at::kInt);
        a.narrow(1, 2, 2).fill_(1);
        b.narrow(1, 2, 2).fill_(3);
        double fraction = -1;
        auto same = segmentDifference(a, b, &fraction);
        QCOMPARE(same.sum().item<int64_t>(), 0);
        QCOMPARE(fraction, 0.0);
        b[0][0] = 3;  // moved to the right segment
        auto changed = segmentDifference(a, b, &fraction);
        QCOMPARE(changed.sum().item<int64_t>(), 1);
        QVERIFY(changed[0][0].item<bool>());
        QCOMPARE(fraction, 1.0 / 16);
    }

    void panesShowTheirSources()
    {
        SelectionModel selection;
        ComparePanel panel(&selection);
        panel.resize(1200, 500);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        QCOMPARE(panel.paneCount(), 3);  // one per level until the user chooses
        QVERIFY(panel.isRendered());
        const auto& p = m_result->pyramid;
        for (int i = 0; i < 3; ++i) {
            QCOMPARE(panel.source(i).kind, Kind::Level);
            QVERIFY(at::equal(panel.paneLabels(i), p.pixelLabels(i + 1)));
            QVERIFY(!panel.view(i)->image().isNull());
        }
        panel.setPaneCount(4);
        ComparePanel::Source s;
        s.kind = Kind::KMeans;
        s.k = 3;
        panel.setSource(3, s);
        QVERIFY(at::equal(panel.paneLabels(3), m_result->merger->pixelLabels(m_result->merger->merge(3))));
        s.kind = Kind::EncodingHead;
        s.block = 1;
        s.head = 1;
        panel.setSource(2, s);
        const auto& part = m_result->partitions[1];
        const auto grid = part.assign[1].reshape({part.gridH, part.gridW}).to(at::kInt);
        QVERIFY(at::equal(panel.paneLabels(2), resizeLabels(grid, 224)));
        QVERIFY(panel.view(2)->caption().contains(QStringLiteral("head 2")));
        QVERIFY(panel.isRendered());
        // Panes zoom together.
        panel.view(0)->zoomBy(2.5, QPointF(50, 50));
        for (int i = 1; i < 4; ++i)
            QCOMPARE(panel.view(i)->zoom(), panel.view(0)->zoom());
    }

    // Three panes in a typical window: each picture is fitted to its pane (it spans the pane's width
    // or height) and the panes are arranged so that the picture fills most of each pane, rather than
    // three tall, narrow panes with a small picture in the middle of each.
    void threePanesFitTheirPictures_data()
    {
        QTest::addColumn<QSize>("size");
        QTest::newRow("explorer window") << QSize(780, 790);
        QTest::newRow("large panel") << QSize(1280, 760);
        QTest::newRow("wide, low panel") << QSize(1700, 480);
    }

    void threePanesFitTheirPictures()
    {
        QFETCH(QSize, size);
        SelectionModel selection;
        ComparePanel panel(&selection);
        panel.resize(size);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        panel.setPaneCount(3);
        QTest::qWait(50);  // a new arrangement of the panes is laid out by a posted event
        QVERIFY(panel.isRendered());
        for (int i = 0; i < 3; ++i) {
            const ImageView* view = panel.view(i);
            const QString where = QStringLiteral("pane %1").arg(i + 1);
            QVERIFY2(!view->image().isNull(), qPrintable(where));
            // The view takes the pane, less the pane's source controls.
            const QWidget* pane = view->parentWidget();
            QVERIFY(pane->isVisible());
            QCOMPARE(view->width(), pane->width());
            QVERIFY2(view->height() > pane->height() - 80, qPrintable(where));
            // The picture lies inside the view and reaches two opposite sides (the view keeps 4 pixels
            // of margin on each side).
            const QRectF shown(view->widgetPointOf(QPointF(0, 0)),
                               view->widgetPointOf(QPointF(view->image().width(), view->image().height())));
            const QString sizes = QStringLiteral("%1: picture %2x%3 in a %4x%5 view of a %6x%7 pane")
                                      .arg(where)
                                      .arg(shown.width())
                                      .arg(shown.height())
                                      .arg(view->width())
                                      .arg(view->height())
                                      .arg(pane->width())
                                      .arg(pane->height());
            QVERIFY2(QRectF(view->rect()).adjusted(-1, -1, 1, 1).contains(shown), qPrintable(sizes));
            const bool fillsWidth = std::abs(shown.width() - view->width()) <= 10;
            const bool fillsHeight = std::abs(shown.height() - view->height()) <= 10;
            QVERIFY2(fillsWidth || fillsHeight, qPrintable(sizes));
            // ...and covers most of its pane.
            QVERIFY2(shown.width() * shown.height() > 0.5 * pane->width() * pane->height(), qPrintable(sizes));
        }
        // All three panes have the same size (but for the pixel left over by the division).
        for (int i = 1; i < 3; ++i) {
            QVERIFY(std::abs(panel.view(i)->width() - panel.view(0)->width()) <= 1);
            QVERIFY(std::abs(panel.view(i)->height() - panel.view(0)->height()) <= 1);
        }
    }

    void secondModelAndDifference()
    {
        SelectionModel selection;
        ComparePanel panel(&selection);
        panel.resize(1200, 500);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        panel.setPaneCount(2);
        ComparePanel::Source second;
        second.kind = Kind::SecondModel;
        second.level = 3;
        panel.setSource(1, second);
        QVERIFY(panel.view(1)->image().isNull());  // nothing loaded yet: placeholder
        panel.setSecondaryResult(m_second);
        QVERIFY(!panel.view(1)->image().isNull());
        QVERIFY(panel.isRendered());

        ComparePanel::Source level3;
        level3.level = 3;
        panel.setSource(0, level3);
        // The legacy file holds the same weights: nothing changes.
        panel.setDifference(true, 0, 1);
        QVERIFY(panel.differenceMask().defined());
        QCOMPARE(panel.differenceFraction(), 0.0);
        QVERIFY(!panel.view(0)->inputLayer().isNull());

        // Segments nest: every level-1 segment lies inside one level-3 segment, so matching level 1
        // to level 3 changes nothing...
        ComparePanel::Source level1;
        level1.level = 1;
        panel.setSource(0, level1);
        ComparePanel::Source ownLevel3;
        ownLevel3.level = 3;
        panel.setSource(1, ownLevel3);
        QVERIFY(panel.differenceMask().defined());
        QCOMPARE(panel.differenceFraction(), 0.0);
        // ...while level 3 matched to level 1 marks every pixel outside each segment's largest
        // level-1 part.
        panel.setDifference(true, 1, 0);
        const auto expected = segmentDifference(m_result->pyramid.pixelLabels(3), m_result->pyramid.pixelLabels(1));
        QVERIFY(at::equal(panel.differenceMask(), expected));
        QVERIFY(panel.differenceFraction() > 0.3);
        QVERIFY(panel.differenceFraction() < 1.0);
        // The marked pixels are drawn (magenta) in the layer over both panes.
        const QImage layer = panel.view(1)->inputLayer();
        QCOMPARE(layer.size(), QSize(224, 224));
        const auto mask = expected.contiguous();
        const bool* m = mask.data_ptr<bool>();
        for (int i = 0; i < 224 * 224; i += 37) {
            const QColor c = layer.pixelColor(i % 224, i / 224);
            QCOMPARE(c.alpha() > 150, m[i]);
        }
        panel.setDifference(false);
        QVERIFY(panel.view(0)->inputLayer().isNull());
    }

private:
    ExplainResultPtr m_result;
    ExplainResultPtr m_second;
};

QTEST_MAIN(TestComparePanel)
#include "test_compare_panel.moc"
