#pragma once

// The segment pyramid in 3D (VTK rendered into a QOpenGLWidget): the image and each level as
// stacked planes, lines from every segment's centroid to its parent's; rotate, zoom, pick.

#include <memory>

#include <QOpenGLWidget>
#include <QPointF>
#include <QSurfaceFormat>

#include "fec/ui/explain_result.h"

namespace fec::ui {

class SelectionModel;

class Pyramid3DView : public QOpenGLWidget {
    Q_OBJECT
public:
    explicit Pyramid3DView(QWidget* parent = nullptr);
    ~Pyramid3DView() override;

    /// Shows a new result (nullptr clears). Cheap to call repeatedly; rebuilds the scene lazily.
    void setResult(ExplainResultPtr result);
    /// Linked selection: picking a segment selects it; the selected node is highlighted.
    void setSelectionModel(SelectionModel* selection);
    /// Vertical distance between level planes, relative to the image width.
    void setLevelSpacing(double spacing);
    /// Renders now and returns the frame (for screenshots and tests).
    QImage renderToImage();
    /// True once a frame with the current result has been drawn.
    bool hasRendered() const;

    /// The OpenGL format VTK needs (3.2 core, depth buffer). Install it with
    /// QSurfaceFormat::setDefaultFormat() before the QApplication is constructed.
    static QSurfaceFormat defaultFormat();
    double levelSpacing() const;
    /// Back to the initial oblique view of the whole pyramid (also: double-click).
    void resetCamera();
    /// Where a node's centroid appears in the last frame, in widget coordinates (logical pixels);
    /// (-1, -1) before the first frame or for an unknown node.
    QPointF projectedNode(int node) const;
    /// Where a model-input pixel on a plane (0 = the image, l = level l) appears in the last
    /// frame, in widget coordinates; (-1, -1) before the first frame.
    QPointF projectedPixel(QPointF modelPixel, int plane) const;
    /// The node a click at `position` (widget coordinates) selects: the node whose centroid is
    /// within a few pixels, else the segment under the mouse on the nearest plane (the image plane
    /// counts as level 1); -1 for none.
    int nodeAt(QPointF position) const;
    /// Duration of the last frame (VTK render and blit, CPU wall time), in milliseconds.
    double lastFrameMs() const;

Q_SIGNALS:
    /// Emitted after every completed frame.
    void frameRendered();

protected:
    void initializeGL() override;
    void paintGL() override;
    void resizeGL(int w, int h) override;
    void mousePressEvent(QMouseEvent* event) override;
    void mouseMoveEvent(QMouseEvent* event) override;
    void mouseReleaseEvent(QMouseEvent* event) override;
    void wheelEvent(QWheelEvent* event) override;
    void mouseDoubleClickEvent(QMouseEvent* event) override;
    void leaveEvent(QEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
