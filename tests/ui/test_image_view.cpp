// The image view: pixel mapping back to the model input, zoom around the cursor, pan, fit, 1:1,
// click and hover reported to the selection model, and synchronised views.

#include <QSignalSpy>
#include <QtTest/QtTest>

#include "fec/ui/image_view.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/view_sync.h"

using namespace fec::ui;

namespace {

QImage testImage(int w, int h)
{
    QImage image(w, h, QImage::Format_RGB888);
    image.fill(Qt::darkGreen);
    return image;
}

// The squash mapping of a w x h image onto an S x S input.
PixelMapping squash(int w, int h, int s)
{
    PixelMapping m;
    m.scaleX = double(w) / s;
    m.scaleY = double(h) / s;
    m.inputSize = s;
    return m;
}

}  // namespace

class TestImageView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void mapsWidgetPositionsToInputPixels()
    {
        ImageView view;
        view.resize(400, 300);
        view.setImage(testImage(448, 224));
        view.setPixelMapping(squash(448, 224, 224));
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QVERIFY(view.isFitted());
        // The image's top-left pixel and its bottom-right pixel.
        const QPointF tl = view.widgetPointOf(QPointF(0.5, 0.5));
        QCOMPARE(view.inputPixelAt(tl), QPoint(0, 0));
        const QPointF br = view.widgetPointOf(QPointF(447.5, 223.5));
        QCOMPARE(view.inputPixelAt(br), QPoint(223, 223));
        // x = 200 in the image is u = 100 in the input (scale 2), y = 100 is v = 100.
        QCOMPARE(view.inputPixelAt(view.widgetPointOf(QPointF(201, 100.5))), QPoint(100, 100));
        // Outside the picture: nothing.
        QCOMPARE(view.inputPixelAt(QPointF(1, 1)), QPoint(-1, -1));
    }

    void zoomKeepsThePointUnderTheCursor()
    {
        ImageView view;
        view.resize(400, 300);
        view.setImage(testImage(600, 400));
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        const QPointF cursor(250, 120);
        const QPointF before = view.imagePointAt(cursor);
        QSignalSpy changed(&view, &ImageView::viewStateChanged);
        QWheelEvent wheel(cursor, view.mapToGlobal(cursor), QPoint(), QPoint(0, 240), Qt::NoButton, Qt::NoModifier,
                          Qt::NoScrollPhase, false);
        QApplication::sendEvent(&view, &wheel);
        QCOMPARE(changed.size(), 1);
        QVERIFY(!view.isFitted());
        QVERIFY(view.zoom() > 1.3 * 400.0 / 600.0);
        const QPointF after = view.imagePointAt(cursor);
        QVERIFY2(
            std::abs(after.x() - before.x()) < 0.5 && std::abs(after.y() - before.y()) < 0.5,
            qPrintable(QStringLiteral("%1,%2 vs %3,%4").arg(before.x()).arg(before.y()).arg(after.x()).arg(after.y())));
        view.actualSize();
        QCOMPARE(view.zoom(), 1.0 / view.devicePixelRatioF());
        view.fitToWindow();
        QVERIFY(view.isFitted());
    }

    void dragPansWithoutSelecting()
    {
        SelectionModel selection;
        ImageView view;
        view.resize(300, 300);
        view.setImage(testImage(224, 224));
        view.setPixelMapping(squash(224, 224, 224));
        view.setSelectionModel(&selection);
        view.setNodeLookup([](QPoint p) { return p.x() / 10; });
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.zoomBy(4.0, QPointF(150, 150));
        const QPointF centreBefore = view.imagePointAt(QPointF(150, 150));
        QTest::mousePress(&view, Qt::LeftButton, Qt::NoModifier, QPoint(150, 150));
        QTest::mouseMove(&view, QPoint(170, 160));
        QTest::mouseMove(&view, QPoint(200, 170));
        QTest::mouseRelease(&view, Qt::LeftButton, Qt::NoModifier, QPoint(200, 170));
        QCOMPARE(selection.selectedNode(), -1);  // a drag is not a click
        const QPointF centreAfter = view.imagePointAt(QPointF(150, 150));
        QVERIFY(centreAfter.x() < centreBefore.x() - 5);

        // A click selects the node the lookup names for the pixel under the mouse.
        const QPoint click = view.widgetPointOf(QPointF(105.5, 100.5)).toPoint();
        QTest::mouseClick(&view, Qt::LeftButton, Qt::NoModifier, click);
        QCOMPARE(selection.selectedNode(), view.inputPixelAt(click).x() / 10);
        QVERIFY(selection.selectedNode() >= 0);
    }

    void hoverReportsPixelAndNode()
    {
        SelectionModel selection;
        ImageView view;
        view.resize(224, 224);
        view.setImage(testImage(224, 224));
        view.setPixelMapping(squash(224, 224, 224));
        view.setSelectionModel(&selection);
        view.setNodeLookup([](QPoint p) { return p.y(); });
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        const QPoint pos = view.widgetPointOf(QPointF(50.5, 60.5)).toPoint();
        QTest::mouseMove(&view, pos);
        QTRY_COMPARE(selection.hoveredPixel(), view.inputPixelAt(pos));
        QCOMPARE(selection.hoveredNode(), view.inputPixelAt(pos).y());
        QEvent leave(QEvent::Leave);
        QApplication::sendEvent(&view, &leave);
        QCOMPARE(selection.hoveredPixel(), QPoint(-1, -1));
        QCOMPARE(selection.hoveredNode(), -1);
    }

    void highlightDimsOutsideTheSelection()
    {
        ImageView view;
        view.resize(224, 224);
        view.setImage(testImage(224, 224));
        view.setPixelMapping(squash(224, 224, 224));
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        ViewHighlight h;
        h.blockW = h.blockH = 56;
        h.blockSize = 4;
        h.selectedMask.assign(56 * 56, 0);
        for (int y = 0; y < 28; ++y)
            for (int x = 0; x < 28; ++x)
                h.selectedMask[y * 56 + x] = 1;
        view.setHighlight(h);
        const QImage shot = view.grab().toImage();
        const QPoint inside = view.widgetPointOf(QPointF(40, 40)).toPoint();
        const QPoint outside = view.widgetPointOf(QPointF(180, 180)).toPoint();
        QVERIFY(qGray(shot.pixel(inside)) > qGray(shot.pixel(outside)) + 20);
    }

    void syncedViewsFollowEachOther()
    {
        ViewSync sync;
        ImageView a, b;
        for (auto* v : {&a, &b}) {
            v->resize(300, 200);
            v->setImage(testImage(600, 400));
            v->show();
            sync.addView(v);
        }
        QVERIFY(QTest::qWaitForWindowExposed(&b));
        a.zoomBy(3.0, QPointF(100, 50));
        QCOMPARE(b.zoom(), a.zoom());
        QVERIFY(!b.isFitted());
        const QPointF ca = a.imagePointAt(QPointF(150, 100)), cb = b.imagePointAt(QPointF(150, 100));
        QVERIFY(std::abs(ca.x() - cb.x()) < 1e-6 && std::abs(ca.y() - cb.y()) < 1e-6);
        b.fitToWindow();
        QVERIFY(a.isFitted());
        sync.setEnabled(false);
        a.zoomBy(2.0, QPointF(10, 10));
        QVERIFY(b.isFitted());
    }
};

QTEST_MAIN(TestImageView)
#include "test_image_view.moc"
