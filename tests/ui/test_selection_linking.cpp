// Linked selection: choosing a segment in the hierarchy tree highlights exactly that segment's
// pixels in the image views (the hierarchy's own view and two compare panes); clicking a view
// selects the segment and reveals its row in the tree; hovering outlines the hovered segment.

#include <QItemSelectionModel>
#include <QTreeView>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/hierarchy_model.h"
#include "fec/ui/hierarchy_panel.h"
#include "fec/ui/image_view.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"

using namespace fec::ui;

namespace {

// Checks on screen: blocks well inside the mask keep their brightness, blocks well outside it
// are dimmed (compared with the same view without a selection).
void checkDrawnHighlight(ImageView* view, const QImage& before, const std::vector<uint8_t>& mask, int bw, int bh,
                         bool expectInterior)
{
    const QImage after = view->grab().toImage();
    QCOMPARE(after.size(), before.size());
    const auto& m = view->pixelMapping();
    int inside = 0, outside = 0;
    for (int by = 1; by < bh - 1; ++by)
        for (int bx = 1; bx < bw - 1; ++bx) {
            const uint8_t v = mask[by * bw + bx];
            bool uniform = true;
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx)
                    uniform = uniform && mask[(by + dy) * bw + bx + dx] == v;
            if (!uniform)
                continue;
            const QPointF image(m.offsetX + (bx * 4 + 2) * m.scaleX, m.offsetY + (by * 4 + 2) * m.scaleY);
            const QPoint p = (view->widgetPointOf(image) * after.devicePixelRatio()).toPoint();
            const int b0 = qGray(before.pixel(p)), b1 = qGray(after.pixel(p));
            if (v) {
                QVERIFY2(std::abs(b1 - b0) <= 2,
                         qPrintable(QStringLiteral("selected block %1,%2 changed").arg(bx).arg(by)));
                ++inside;
            } else {
                QVERIFY2(b1 < b0 || b0 < 12,
                         qPrintable(QStringLiteral("block %1,%2 outside not dimmed").arg(bx).arg(by)));
                ++outside;
            }
        }
    if (expectInterior)
        QVERIFY(inside > 0);
    QVERIFY(outside > 0);
}

}  // namespace

class TestSelectionLinking : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        m_result = fec::test::explain(*fec::test::loadBundle());
        QVERIFY(m_result);
    }

    void treeSelectionHighlightsTheNodeEverywhere()
    {
        SelectionModel selection;
        HierarchyPanel hierarchy(&selection);
        ComparePanel compare(&selection);
        hierarchy.resize(1000, 600);
        compare.resize(1000, 500);
        hierarchy.show();
        compare.show();
        QVERIFY(QTest::qWaitForWindowExposed(&compare));
        hierarchy.setResult(m_result);
        compare.setResult(m_result);
        compare.setPaneCount(2);
        QVERIFY(compare.isRendered());
        ImageView* views[] = {hierarchy.pyramidPanel()->view(), compare.view(0), compare.view(1)};
        QImage before[3];
        for (int i = 0; i < 3; ++i)
            before[i] = views[i]->grab().toImage();

        const auto& p = m_result->pyramid;
        const int bw = static_cast<int>(p.blockW), bh = static_cast<int>(p.blockH);
        // The largest top-level segment, then its largest child and grandchild, found in the tree.
        auto* model = hierarchy.model();
        auto largest = [&](const QModelIndex& parent) {
            QModelIndex best;
            for (int r = 0; r < model->rowCount(parent); ++r) {
                const QModelIndex i = model->index(r, 0, parent);
                if (!best.isValid() || p.nodes[model->nodeOf(i)].blocks > p.nodes[model->nodeOf(best)].blocks)
                    best = i;
            }
            return best;
        };
        const QModelIndex root = largest(QModelIndex());
        const QModelIndex child = largest(root);
        const QModelIndex grandChild = largest(child);
        for (const QModelIndex& index : {root, child, grandChild}) {
            QVERIFY(index.isValid());
            const int node = model->nodeOf(index);
            hierarchy.tree()->selectionModel()->setCurrentIndex(index, QItemSelectionModel::ClearAndSelect);
            QCOMPARE(selection.selectedNode(), node);
            const auto mask = p.blockMask(node);
            for (auto* view : views)
                QCOMPARE(view->highlight().selectedMask, mask);
            // The hierarchy's view shows the node's own level.
            QCOMPARE(hierarchy.pyramidPanel()->level(), p.nodes[node].level);
            // Big segments have interior blocks away from every outline; small ones may not.
            const bool interior = index == root;
            checkDrawnHighlight(compare.view(0), before[1], mask, bw, bh, interior);
            checkDrawnHighlight(compare.view(1), before[2], mask, bw, bh, interior);
            // Ancestors are outlined: one per level above.
            QCOMPARE(static_cast<int>(compare.view(0)->highlight().ancestorOutlines.size()),
                     p.levelCount() - p.nodes[node].level);
        }
    }

    void clickInAViewSelectsTheRow()
    {
        SelectionModel selection;
        HierarchyPanel hierarchy(&selection);
        ComparePanel compare(&selection);
        hierarchy.resize(1000, 600);
        compare.resize(1000, 500);
        hierarchy.show();
        compare.show();
        QVERIFY(QTest::qWaitForWindowExposed(&compare));
        hierarchy.setResult(m_result);
        compare.setResult(m_result);
        // Pane 2 shows level 2: a click there selects the level-2 segment under the mouse.
        ComparePanel::Source s;
        s.kind = ComparePanel::Source::Kind::Level;
        s.level = 2;
        compare.setSource(1, s);
        ImageView* view = compare.view(1);
        const QPoint inputPixel(150, 60);
        const auto& m = view->pixelMapping();
        const QPoint click = view->widgetPointOf(QPointF(m.offsetX + (inputPixel.x() + 0.5) * m.scaleX,
                                                         m.offsetY + (inputPixel.y() + 0.5) * m.scaleY))
                                 .toPoint();
        QCOMPARE(view->inputPixelAt(click), inputPixel);
        QTest::mouseClick(view, Qt::LeftButton, Qt::NoModifier, click);
        const auto& p = m_result->pyramid;
        const int expected = p.nodeOf(2, p.clusterAt(2, inputPixel.x(), inputPixel.y()));
        QVERIFY(expected >= 0);
        QCOMPARE(selection.selectedNode(), expected);
        QCOMPARE(hierarchy.model()->nodeOf(hierarchy.tree()->currentIndex()), expected);
        QCOMPARE(compare.view(0)->highlight().selectedMask, p.blockMask(expected));

        // Hover outlines the hovered segment of the pane's level; no dimming.
        const QPoint otherPixel(20, 200);
        const QPoint hoverPos = view->widgetPointOf(QPointF(m.offsetX + (otherPixel.x() + 0.5) * m.scaleX,
                                                            m.offsetY + (otherPixel.y() + 0.5) * m.scaleY))
                                    .toPoint();
        QMouseEvent move(QEvent::MouseMove, QPointF(hoverPos), view->mapToGlobal(QPointF(hoverPos)), Qt::NoButton,
                         Qt::NoButton, Qt::NoModifier);
        QApplication::sendEvent(view, &move);
        QCOMPARE(selection.hoveredPixel(), otherPixel);
        const int hovered = p.nodeOf(2, p.clusterAt(2, otherPixel.x(), otherPixel.y()));
        QCOMPARE(selection.hoveredNode(), hovered);
        if (hovered != expected)
            QVERIFY(!compare.view(0)->highlight().hoveredOutline.isEmpty());
    }

private:
    ExplainResultPtr m_result;
};

QTEST_MAIN(TestSelectionLinking)
#include "test_selection_linking.moc"
