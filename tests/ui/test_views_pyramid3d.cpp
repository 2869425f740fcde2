// Pyramid3DView (VTK in a QOpenGLWidget, needs an X display): it draws the pyramid, a click on a
// node's centroid selects that node, the selection is visible, and the mouse moves the camera.

#include <algorithm>
#include <set>
#include <vector>

#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QMouseEvent>
#include <QSignalSpy>
#include <QSurfaceFormat>
#include <QTest>

#include "fec/ui/pyramid3d_view.h"
#include "fec/ui/selection_model.h"
#include "views_fixture.h"

using namespace fec;
using fec::ui::Pyramid3DView;
using fec::ui::SelectionModel;

namespace {

int distinctColours(const QImage& image)
{
    std::set<QRgb> colours;
    const QImage rgb = image.convertToFormat(QImage::Format_RGB32);
    for (int y = 0; y < rgb.height(); y += 2)
        for (int x = 0; x < rgb.width(); x += 2)
            colours.insert(rgb.pixel(x, y) & 0xf8f8f8);
    return static_cast<int>(colours.size());
}

int changedPixels(const QImage& a, const QImage& b)
{
    const QImage x = a.convertToFormat(QImage::Format_RGB32), y = b.convertToFormat(QImage::Format_RGB32);
    if (x.size() != y.size())
        return x.width() * x.height();
    int changed = 0;
    for (int j = 0; j < x.height(); ++j)
        for (int i = 0; i < x.width(); ++i) {
            const QRgb p = x.pixel(i, j), q = y.pixel(i, j);
            changed +=
                std::abs(qRed(p) - qRed(q)) + std::abs(qGreen(p) - qGreen(q)) + std::abs(qBlue(p) - qBlue(q)) > 30;
        }
    return changed;
}

void drag(QWidget* w, Qt::MouseButton button, QPoint from, QPoint to, Qt::KeyboardModifiers mods = {})
{
    QMouseEvent press(QEvent::MouseButtonPress, from, w->mapToGlobal(from), button, button, mods);
    QApplication::sendEvent(w, &press);
    for (int i = 1; i <= 10; ++i) {
        const QPoint p = from + (to - from) * i / 10;
        QMouseEvent move(QEvent::MouseMove, p, w->mapToGlobal(p), Qt::NoButton, button, mods);
        QApplication::sendEvent(w, &move);
    }
    QMouseEvent release(QEvent::MouseButtonRelease, to, w->mapToGlobal(to), button, Qt::NoButton, mods);
    QApplication::sendEvent(w, &release);
}

}  // namespace

class TestPyramid3DView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        if (qEnvironmentVariableIsEmpty("DISPLAY"))
            QSKIP("no X display: the VTK view needs one (run under xvfb-run -a -s \"-screen 0 1280x800x24\" "
                  "with QT_QPA_PLATFORM=xcb)");
        if (!test::viewFixturesPresent())
            QSKIP("reference fixtures not found: set FEC_REFERENCE_DIR to the folder with tiny_seed0.pth.tar");
        m_result = test::makeExplainResult();
        m_view = std::make_unique<Pyramid3DView>();
        m_view->setSelectionModel(&m_selection);
        m_view->resize(800, 600);
        m_view->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_view.get()));
        m_view->setResult(m_result);
        QTRY_VERIFY_WITH_TIMEOUT(m_view->hasRendered(), 10000);
    }

    void cleanupTestCase() { m_view.reset(); }

    void rendersTheStackedPlanes()
    {
        const QImage frame = m_view->renderToImage();
        QCOMPARE(frame.size(), QSize(800, 600) * m_view->devicePixelRatioF());
        save(frame, "pyramid3d_view.png");
        // The image, several levels of palette colours, nodes and links: many colours.
        QVERIFY2(distinctColours(frame) > 200, qPrintable(QString::number(distinctColours(frame))));
        QVERIFY(m_view->lastFrameMs() > 0);
        // Every node projects inside the widget in the initial view.
        for (const auto& n : m_result->pyramid.nodes) {
            const QPointF p = m_view->projectedNode(n.id);
            QVERIFY(QRectF(0, 0, 800, 600).contains(p));
        }
    }

    void clickOnACentroidSelectsItsNode_data()
    {
        QTest::addColumn<int>("level");
        for (int l = 1; l <= 3; ++l)
            QTest::newRow(qPrintable(QString("level %1").arg(l))) << l;
    }

    void clickOnACentroidSelectsItsNode()
    {
        QFETCH(int, level);
        const auto& pyramid = m_result->pyramid;
        QVERIFY(level <= pyramid.levelCount());
        // The largest segment of the level: its centroid is well inside it.
        const auto& ids = pyramid.levelNodes[level - 1];
        const int node = *std::max_element(
            ids.begin(), ids.end(), [&](int a, int b) { return pyramid.nodes[a].pixels < pyramid.nodes[b].pixels; });
        m_selection.setSelectedNode(-1);
        m_view->renderToImage();
        const QPoint at = m_view->projectedNode(node).toPoint();
        QTest::mouseClick(m_view.get(), Qt::LeftButton, {}, at);
        const int picked = m_selection.selectedNode();
        QVERIFY(picked >= 0);
        const auto& n = pyramid.nodes[node];
        const bool sameNode = picked == node;
        const bool containsPixel =
            pyramid.nodes[picked].level == level &&
            pyramid.nodeOf(level, pyramid.clusterAt(level, static_cast<int>(n.cx), static_cast<int>(n.cy))) == picked;
        QVERIFY2(sameNode || containsPixel, qPrintable(QString("picked %1, expected %2").arg(picked).arg(node)));
    }

    void clickOnAPlaneSelectsTheSegmentUnderIt()
    {
        // The near corner of the image plane: no centroid close by, no level plane in front.
        const auto& pyramid = m_result->pyramid;
        const QPointF pixel(pyramid.inputW - 5.5, pyramid.inputH - 5.5);
        m_view->renderToImage();
        const QPointF at = m_view->projectedPixel(pixel, 0);
        QVERIFY(QRectF(0, 0, 800, 600).contains(at));
        const int expected =
            pyramid.nodeOf(1, pyramid.clusterAt(1, static_cast<int>(pixel.x()), static_cast<int>(pixel.y())));
        QCOMPARE(m_view->nodeAt(at), expected);
        QTest::mouseClick(m_view.get(), Qt::LeftButton, {}, at.toPoint());
        QCOMPARE(m_selection.selectedNode(), expected);
    }

    void hoverSetsTheHoveredNode()
    {
        const auto& top = m_result->pyramid.levelNodes.back();
        const int node = top[top.size() / 3];
        m_view->renderToImage();
        QTest::mouseMove(m_view.get(), m_view->projectedNode(node).toPoint());
        QTRY_COMPARE(m_selection.hoveredNode(), node);
        QTest::mouseMove(m_view.get(), QPoint(2, 2));
        QTRY_COMPARE(m_selection.hoveredNode(), -1);
    }

    void clickOnTheBackgroundClearsTheSelection()
    {
        m_selection.setSelectedNode(m_result->pyramid.levelNodes.back().front());
        m_view->renderToImage();
        QTest::mouseClick(m_view.get(), Qt::LeftButton, {}, QPoint(3, 3));
        QCOMPARE(m_selection.selectedNode(), -1);
    }

    void selectionIsHighlighted()
    {
        m_selection.setSelectedNode(-1);
        const QImage before = m_view->renderToImage();
        const auto& top = m_result->pyramid.levelNodes.back();
        m_selection.setSelectedNode(top[top.size() / 2]);
        QSignalSpy frames(m_view.get(), &Pyramid3DView::frameRendered);
        const QImage after = m_view->renderToImage();
        QVERIFY(frames.count() >= 1);
        save(after, "pyramid3d_view_selected.png");
        // Dimmed planes and links, lit lineage: a large part of the frame changes.
        QVERIFY(changedPixels(before, after) > 800 * 600 / 20);
        m_selection.setSelectedNode(-1);
        QVERIFY(changedPixels(before, m_view->renderToImage()) < 50);
    }

    void mouseRotatesZoomsAndPans()
    {
        m_view->resetCamera();
        m_view->renderToImage();
        const int node = m_result->pyramid.levelNodes.back().front();
        const QPointF start = m_view->projectedNode(node);

        drag(m_view.get(), Qt::LeftButton, QPoint(400, 300), QPoint(520, 330));
        m_view->renderToImage();
        const QPointF rotated = m_view->projectedNode(node);
        QVERIFY((rotated - start).manhattanLength() > 5);
        QCOMPARE(m_selection.selectedNode(), -1);  // a drag is not a click

        m_view->resetCamera();
        m_view->renderToImage();
        drag(m_view.get(), Qt::MiddleButton, QPoint(400, 300), QPoint(450, 300));
        m_view->renderToImage();
        const QPointF panned = m_view->projectedNode(node);
        // Points move with the mouse (exactly 50 px at the focal depth, perspective elsewhere).
        QVERIFY2(panned.x() - start.x() > 30 && panned.x() - start.x() < 80 && std::abs(panned.y() - start.y()) < 15,
                 qPrintable(QString("%1,%2 -> %3,%4").arg(start.x()).arg(start.y()).arg(panned.x()).arg(panned.y())));

        m_view->resetCamera();
        m_view->renderToImage();
        const QPointF centre(400, 300);
        const double before = QLineF(m_view->projectedNode(node), centre).length();
        QWheelEvent wheel(QPointF(400, 300), m_view->mapToGlobal(QPointF(400, 300)), QPoint(), QPoint(0, 360),
                          Qt::NoButton, Qt::NoModifier, Qt::NoScrollPhase, false);
        QApplication::sendEvent(m_view.get(), &wheel);
        m_view->renderToImage();
        const double after = QLineF(m_view->projectedNode(node), centre).length();
        QVERIFY2(after > before * 1.1, qPrintable(QString("%1 -> %2").arg(before).arg(after)));
        m_view->resetCamera();
    }

    void frameTime()
    {
        m_view->resetCamera();
        std::vector<double> ms, wall;
        for (int i = 0; i < 8; ++i) {
            QElapsedTimer timer;
            timer.start();
            m_view->renderToImage();
            wall.push_back(timer.nsecsElapsed() / 1e6);
            ms.push_back(m_view->lastFrameMs());
        }
        std::sort(ms.begin(), ms.end());
        std::sort(wall.begin(), wall.end());
        qInfo("800x600 frame: render+blit median %.1f ms; renderToImage (with read-back) median %.1f ms",
              ms[ms.size() / 2], wall[wall.size() / 2]);
        QVERIFY(ms[ms.size() / 2] < 1000);
    }

    void spacingAndNewResultsRebuildTheScene()
    {
        const QImage before = m_view->renderToImage();
        m_view->setLevelSpacing(0.6);
        QCOMPARE(m_view->levelSpacing(), 0.6);
        QVERIFY(changedPixels(before, m_view->renderToImage()) > 1000);
        m_view->setLevelSpacing(0.3);

        m_view->setResult(nullptr);
        QVERIFY(!m_view->hasRendered());
        const QImage empty = m_view->renderToImage();
        QVERIFY(distinctColours(empty) < 100);  // background gradient only
        QCOMPARE(m_view->nodeAt(QPointF(400, 300)), -1);
        m_view->setResult(m_result);
        m_view->renderToImage();
        QVERIFY(m_view->hasRendered());
    }

private:
    void save(const QImage& image, const QString& name)
    {
        const QString dir = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS");
        if (!dir.isEmpty())
            image.save(QDir(dir).filePath(name));
    }

    ui::ExplainResultPtr m_result;
    SelectionModel m_selection;
    std::unique_ptr<Pyramid3DView> m_view;
};

int main(int argc, char** argv)
{
    // VTK needs a 3.2 core context; without an X display run offscreen so that every test can
    // report its skip instead of the application failing to start.
    QSurfaceFormat::setDefaultFormat(Pyramid3DView::defaultFormat());
    if (qEnvironmentVariableIsEmpty("DISPLAY"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    TestPyramid3DView test;
    return QTest::qExec(&test, argc, argv);
}

#include "test_views_pyramid3d.moc"
