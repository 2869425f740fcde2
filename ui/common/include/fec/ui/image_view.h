#pragma once

// A zoomable, pannable view of one picture at its own resolution, with the linked selection
// drawn on top. It knows the mapping from the model input back to the picture, so it reports the
// model-input pixel under the mouse and lets the owner say which hierarchy node that is.

#include <functional>
#include <vector>

#include <QImage>
#include <QPainterPath>
#include <QPixmap>
#include <QPointer>
#include <QWidget>

namespace fec::ui {

class SelectionModel;

/// Model-input pixel (u, v) -> picture pixel: x = offsetX + u * scaleX, y = offsetY + v * scaleY
/// (the same numbers as fec::imaging::InputMapping).
struct PixelMapping {
    double scaleX = 1, scaleY = 1, offsetX = 0, offsetY = 0;
    int inputSize = 0;  ///< S; 0 = no mapping (nothing is reported)
};

/// What the linked selection looks like in a view, on the pixel-block grid of the model input.
struct ViewHighlight {
    int blockW = 0, blockH = 0, blockSize = 4;
    std::vector<uint8_t> selectedMask;           ///< blockH * blockW; empty: nothing selected
    QPainterPath selectedOutline;                ///< in block units
    QPainterPath descendantOutline;              ///< boundaries of the selection's children
    std::vector<QPainterPath> ancestorOutlines;  ///< parent first
    QPainterPath hoveredOutline;
    bool isEmpty() const { return selectedMask.empty() && hoveredOutline.isEmpty() && ancestorOutlines.empty(); }
};

/// Zoom and centre (fractions of the picture) shared by synchronised views.
struct ViewState {
    bool fit = true;
    double zoom = 1;  ///< device-independent pixels per picture pixel
    double centreX = 0.5, centreY = 0.5;
};

class ImageView : public QWidget {
    Q_OBJECT
public:
    explicit ImageView(QWidget* parent = nullptr);
    ~ImageView() override;

    /// The picture (an overlay at the image's own resolution). Keeps zoom and centre when the size
    /// is unchanged; a null image shows the placeholder text.
    void setImage(const QImage& image);
    const QImage& image() const { return m_image; }
    void setPixelMapping(const PixelMapping& mapping);
    const PixelMapping& pixelMapping() const { return m_mapping; }
    void setHighlight(ViewHighlight highlight);
    const ViewHighlight& highlight() const { return m_highlight; }
    /// An extra layer over the model input (S x S or any size covering it), e.g. a difference map.
    void setInputLayer(const QImage& layer);
    const QImage& inputLayer() const { return m_inputLayer; }
    void setPlaceholderText(const QString& text);
    /// A short caption drawn in the top-left corner (e.g. "Level 2 · 196 clusters").
    void setCaption(const QString& caption);
    QString caption() const { return m_caption; }

    /// Hover and click go to `selection` (hovered pixel, hovered node, selected node).
    void setSelectionModel(SelectionModel* selection);
    /// Node under a model-input pixel for this view's content (-1 for none).
    void setNodeLookup(std::function<int(QPoint)> lookup);

    ViewState viewState() const;
    /// Applies a state without emitting viewStateChanged.
    void setViewState(const ViewState& state);
    double zoom() const { return m_zoom; }
    bool isFitted() const { return m_fit; }

    /// Model-input pixel under a widget position, or (-1, -1).
    QPoint inputPixelAt(QPointF widgetPos) const;
    /// Picture coordinates of a widget position.
    QPointF imagePointAt(QPointF widgetPos) const;
    /// Widget position of a picture point.
    QPointF widgetPointOf(QPointF imagePoint) const;

public Q_SLOTS:
    void zoomIn();
    void zoomOut();
    void fitToWindow();
    /// One picture pixel per physical screen pixel.
    void actualSize();
    /// Zooms by `factor` keeping the picture point under `widgetPos` in place.
    void zoomBy(double factor, QPointF widgetPos);

Q_SIGNALS:
    /// The user zoomed or panned.
    void viewStateChanged(const fec::ui::ViewState& state);
    void inputPixelHovered(QPoint pixel);
    void inputPixelClicked(QPoint pixel);

protected:
    void paintEvent(QPaintEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;
    void wheelEvent(QWheelEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void mouseMoveEvent(QMouseEvent* event) override;
    void mouseReleaseEvent(QMouseEvent* event) override;
    void mouseDoubleClickEvent(QMouseEvent* event) override;
    void leaveEvent(QEvent* event) override;
    void keyPressEvent(QKeyEvent* event) override;

private:
    void applyFit();
    void clampOffset();
    void emitState();
    void reportHover(QPointF widgetPos);
    QTransform imageToWidget() const;
    QTransform blockToImage() const;
    void rebuildDimLayer();

    QImage m_image;
    QPixmap m_pixmap;
    QImage m_inputLayer;
    QImage m_dimLayer;  // blockW x blockH, dark where not selected
    PixelMapping m_mapping;
    ViewHighlight m_highlight;
    QString m_placeholder;
    QString m_caption;
    QPointer<SelectionModel> m_selection;
    std::function<int(QPoint)> m_lookup;
    double m_zoom = 1;
    QPointF m_offset;  // widget position of picture point (0, 0)
    bool m_fit = true;
    bool m_pressed = false;
    bool m_panning = false;
    QPointF m_pressPos, m_lastPos;
};

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::ViewState)
