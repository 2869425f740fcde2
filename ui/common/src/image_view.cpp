#include "fec/ui/image_view.h"

#include <algorithm>
#include <cmath>

#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QWheelEvent>

#include "fec/ui/selection_model.h"

namespace fec::ui {

namespace {

constexpr double kMaxZoom = 64.0;
constexpr double kDragThreshold = 4.0;

}  // namespace

ImageView::ImageView(QWidget* parent) : QWidget(parent)
{
    qRegisterMetaType<fec::ui::ViewState>();
    setMouseTracking(true);
    setFocusPolicy(Qt::ClickFocus);
    setAttribute(Qt::WA_OpaquePaintEvent);
    setMinimumSize(120, 120);
    setCursor(Qt::CrossCursor);
    m_placeholder = tr("No image");
}

ImageView::~ImageView() = default;

void ImageView::setImage(const QImage& image)
{
    const bool sameSize = !m_image.isNull() && image.size() == m_image.size();
    m_image = image;
    m_pixmap = image.isNull() ? QPixmap() : QPixmap::fromImage(image);
    if (!sameSize || m_fit)
        applyFit();
    update();
}

void ImageView::setPixelMapping(const PixelMapping& mapping)
{
    m_mapping = mapping;
    update();
}

void ImageView::setHighlight(ViewHighlight highlight)
{
    m_highlight = std::move(highlight);
    rebuildDimLayer();
    update();
}

void ImageView::setInputLayer(const QImage& layer)
{
    m_inputLayer = layer;
    update();
}

void ImageView::setPlaceholderText(const QString& text)
{
    m_placeholder = text;
    update();
}

void ImageView::setCaption(const QString& caption)
{
    m_caption = caption;
    update();
}

void ImageView::setSelectionModel(SelectionModel* selection)
{
    m_selection = selection;
}

void ImageView::setNodeLookup(std::function<int(QPoint)> lookup)
{
    m_lookup = std::move(lookup);
}

void ImageView::rebuildDimLayer()
{
    const auto& h = m_highlight;
    if (h.selectedMask.empty() || h.blockW <= 0 || h.blockH <= 0 ||
        h.selectedMask.size() != static_cast<size_t>(h.blockW) * h.blockH) {
        m_dimLayer = QImage();
        return;
    }
    m_dimLayer = QImage(h.blockW, h.blockH, QImage::Format_ARGB32_Premultiplied);
    const QRgb dark = qPremultiply(qRgba(0, 0, 0, 150));
    for (int y = 0; y < h.blockH; ++y) {
        auto* row = reinterpret_cast<QRgb*>(m_dimLayer.scanLine(y));
        const uint8_t* mask = h.selectedMask.data() + static_cast<size_t>(y) * h.blockW;
        for (int x = 0; x < h.blockW; ++x)
            row[x] = mask[x] ? 0u : dark;
    }
}

QTransform ImageView::imageToWidget() const
{
    return QTransform(m_zoom, 0, 0, m_zoom, m_offset.x(), m_offset.y());
}

QTransform ImageView::blockToImage() const
{
    const double b = std::max(1, m_highlight.blockSize);
    return QTransform(m_mapping.scaleX * b, 0, 0, m_mapping.scaleY * b, m_mapping.offsetX, m_mapping.offsetY);
}

QPointF ImageView::imagePointAt(QPointF widgetPos) const
{
    return (widgetPos - m_offset) / m_zoom;
}

QPointF ImageView::widgetPointOf(QPointF imagePoint) const
{
    return imagePoint * m_zoom + m_offset;
}

QPoint ImageView::inputPixelAt(QPointF widgetPos) const
{
    if (m_image.isNull() || m_mapping.inputSize <= 0 || m_mapping.scaleX <= 0 || m_mapping.scaleY <= 0)
        return {-1, -1};
    const QPointF p = imagePointAt(widgetPos);
    if (p.x() < 0 || p.y() < 0 || p.x() >= m_image.width() || p.y() >= m_image.height())
        return {-1, -1};
    const int u = static_cast<int>(std::floor((p.x() - m_mapping.offsetX) / m_mapping.scaleX));
    const int v = static_cast<int>(std::floor((p.y() - m_mapping.offsetY) / m_mapping.scaleY));
    if (u < 0 || v < 0 || u >= m_mapping.inputSize || v >= m_mapping.inputSize)
        return {-1, -1};
    return {u, v};
}

ViewState ImageView::viewState() const
{
    ViewState s;
    s.fit = m_fit;
    s.zoom = m_zoom;
    if (!m_image.isNull()) {
        const QPointF c = imagePointAt(QPointF(width() / 2.0, height() / 2.0));
        s.centreX = c.x() / m_image.width();
        s.centreY = c.y() / m_image.height();
    }
    return s;
}

void ImageView::setViewState(const ViewState& state)
{
    if (state.fit) {
        m_fit = true;
        applyFit();
    } else if (!m_image.isNull()) {
        m_fit = false;
        m_zoom = std::clamp(state.zoom, 1e-3, kMaxZoom);
        const QPointF centre(state.centreX * m_image.width(), state.centreY * m_image.height());
        m_offset = QPointF(width() / 2.0, height() / 2.0) - centre * m_zoom;
        clampOffset();
    }
    update();
}

void ImageView::applyFit()
{
    if (m_image.isNull() || width() <= 0 || height() <= 0)
        return;
    const double margin = 4;
    const double zx = (width() - 2 * margin) / m_image.width();
    const double zy = (height() - 2 * margin) / m_image.height();
    m_zoom = std::max(1e-3, std::min(zx, zy));
    m_offset = QPointF((width() - m_image.width() * m_zoom) / 2.0, (height() - m_image.height() * m_zoom) / 2.0);
}

void ImageView::clampOffset()
{
    if (m_image.isNull())
        return;
    const double w = m_image.width() * m_zoom, h = m_image.height() * m_zoom;
    double x = m_offset.x(), y = m_offset.y();
    // A picture smaller than the view stays centred; a larger one cannot leave a gap at an edge.
    x = w <= width() ? (width() - w) / 2.0 : std::clamp(x, width() - w, 0.0);
    y = h <= height() ? (height() - h) / 2.0 : std::clamp(y, height() - h, 0.0);
    m_offset = QPointF(x, y);
}

void ImageView::emitState()
{
    Q_EMIT viewStateChanged(viewState());
}

void ImageView::zoomBy(double factor, QPointF widgetPos)
{
    if (m_image.isNull())
        return;
    const double minZoom = std::min(0.05, m_zoom);
    const double zoom = std::clamp(m_zoom * factor, minZoom, kMaxZoom);
    const QPointF anchor = imagePointAt(widgetPos);
    m_zoom = zoom;
    m_offset = widgetPos - anchor * m_zoom;
    m_fit = false;
    clampOffset();
    update();
    emitState();
}

void ImageView::zoomIn()
{
    zoomBy(1.25, QPointF(width() / 2.0, height() / 2.0));
}

void ImageView::zoomOut()
{
    zoomBy(0.8, QPointF(width() / 2.0, height() / 2.0));
}

void ImageView::fitToWindow()
{
    m_fit = true;
    applyFit();
    update();
    emitState();
}

void ImageView::actualSize()
{
    if (m_image.isNull())
        return;
    zoomBy((1.0 / devicePixelRatioF()) / m_zoom, QPointF(width() / 2.0, height() / 2.0));
}

void ImageView::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    const QColor background = palette().color(QPalette::Window).darker(118);
    p.fillRect(rect(), background);
    if (m_image.isNull()) {
        p.setPen(palette().color(QPalette::PlaceholderText));
        p.drawText(rect().adjusted(16, 16, -16, -16), Qt::AlignCenter | Qt::TextWordWrap, m_placeholder);
        return;
    }
    const QTransform toWidget = imageToWidget();
    p.setTransform(toWidget);
    p.setRenderHint(QPainter::SmoothPixmapTransform, m_zoom < 1.0);
    p.drawPixmap(0, 0, m_pixmap);
    p.setRenderHint(QPainter::SmoothPixmapTransform, false);

    if (m_mapping.inputSize > 0) {
        const QTransform inputToImage(m_mapping.scaleX, 0, 0, m_mapping.scaleY, m_mapping.offsetX, m_mapping.offsetY);
        if (!m_inputLayer.isNull()) {
            p.setTransform(inputToImage * toWidget);
            p.drawImage(QRectF(0, 0, m_mapping.inputSize, m_mapping.inputSize), m_inputLayer,
                        QRectF(m_inputLayer.rect()));
        }
        const auto& h = m_highlight;
        if (h.blockW > 0 && h.blockH > 0) {
            p.setTransform(blockToImage() * toWidget);
            if (!m_dimLayer.isNull())
                p.drawImage(QRectF(0, 0, h.blockW, h.blockH), m_dimLayer, QRectF(m_dimLayer.rect()));
            p.setBrush(Qt::NoBrush);
            auto stroke = [&p](const QPainterPath& path, const QColor& colour, double width, Qt::PenStyle style) {
                if (path.isEmpty())
                    return;
                QPen pen(colour, width, style, Qt::FlatCap, Qt::MiterJoin);
                pen.setCosmetic(true);
                p.setPen(pen);
                p.drawPath(path);
            };
            stroke(h.descendantOutline, QColor(255, 255, 255, 150), 1.0, Qt::SolidLine);
            for (size_t i = 0; i < h.ancestorOutlines.size(); ++i) {
                stroke(h.ancestorOutlines[i], QColor(0, 0, 0, 140), 3.0, Qt::SolidLine);
                stroke(h.ancestorOutlines[i], QColor(255, 202, 40), 1.5, Qt::DashLine);
            }
            stroke(h.hoveredOutline, QColor(0, 0, 0, 150), 4.0, Qt::SolidLine);
            stroke(h.hoveredOutline, QColor(64, 196, 255), 2.0, Qt::SolidLine);
            stroke(h.selectedOutline, QColor(0, 0, 0, 170), 4.5, Qt::SolidLine);
            stroke(h.selectedOutline, QColor(255, 255, 255), 2.0, Qt::SolidLine);
        }
    }

    if (!m_caption.isEmpty()) {
        p.resetTransform();
        p.setRenderHint(QPainter::Antialiasing, true);
        const QFontMetrics fm(font());
        const QRect textRect = fm.boundingRect(m_caption).adjusted(-8, -4, 8, 4).translated(14, 10 + fm.ascent());
        p.setPen(Qt::NoPen);
        p.setBrush(QColor(0, 0, 0, 150));
        p.drawRoundedRect(textRect, 4, 4);
        p.setPen(Qt::white);
        p.drawText(textRect, Qt::AlignCenter, m_caption);
    }
}

void ImageView::resizeEvent(QResizeEvent*)
{
    if (m_fit)
        applyFit();
    else
        clampOffset();
}

void ImageView::wheelEvent(QWheelEvent* event)
{
    const double steps = event->angleDelta().y() / 120.0;
    if (steps == 0) {
        event->ignore();
        return;
    }
    zoomBy(std::pow(1.2, steps), event->position());
    reportHover(event->position());
    event->accept();
}

void ImageView::mousePressEvent(QMouseEvent* event)
{
    if (event->button() == Qt::LeftButton || event->button() == Qt::MiddleButton) {
        m_pressed = true;
        m_panning = event->button() == Qt::MiddleButton;
        m_pressPos = m_lastPos = event->position();
        if (m_panning)
            setCursor(Qt::ClosedHandCursor);
    }
}

void ImageView::mouseMoveEvent(QMouseEvent* event)
{
    const QPointF pos = event->position();
    if (m_pressed) {
        if (!m_panning && (pos - m_pressPos).manhattanLength() > kDragThreshold) {
            m_panning = true;
            setCursor(Qt::ClosedHandCursor);
        }
        if (m_panning && !m_image.isNull()) {
            m_offset += pos - m_lastPos;
            m_fit = false;
            clampOffset();
            update();
            emitState();
        }
        m_lastPos = pos;
    }
    reportHover(pos);
}

void ImageView::mouseReleaseEvent(QMouseEvent* event)
{
    if (!m_pressed)
        return;
    const bool click = !m_panning && event->button() == Qt::LeftButton;
    m_pressed = false;
    m_panning = false;
    setCursor(Qt::CrossCursor);
    if (!click)
        return;
    const QPoint pixel = inputPixelAt(event->position());
    Q_EMIT inputPixelClicked(pixel);
    if (m_selection)
        m_selection->setSelectedNode(pixel.x() >= 0 && m_lookup ? m_lookup(pixel) : -1);
}

void ImageView::mouseDoubleClickEvent(QMouseEvent* event)
{
    if (event->button() == Qt::LeftButton)
        fitToWindow();
}

void ImageView::leaveEvent(QEvent*)
{
    Q_EMIT inputPixelHovered(QPoint(-1, -1));
    if (m_selection) {
        m_selection->setHoveredPixel(QPoint(-1, -1));
        m_selection->setHoveredNode(-1);
    }
}

void ImageView::keyPressEvent(QKeyEvent* event)
{
    switch (event->key()) {
    case Qt::Key_Plus:
    case Qt::Key_Equal:
        zoomIn();
        break;
    case Qt::Key_Minus:
        zoomOut();
        break;
    case Qt::Key_0:
        fitToWindow();
        break;
    case Qt::Key_1:
        actualSize();
        break;
    case Qt::Key_Escape:
        if (m_selection)
            m_selection->setSelectedNode(-1);
        break;
    default:
        QWidget::keyPressEvent(event);
    }
}

void ImageView::reportHover(QPointF widgetPos)
{
    const QPoint pixel = inputPixelAt(widgetPos);
    Q_EMIT inputPixelHovered(pixel);
    if (!m_selection)
        return;
    m_selection->setHoveredPixel(pixel);
    m_selection->setHoveredNode(pixel.x() >= 0 && m_lookup ? m_lookup(pixel) : -1);
}

}  // namespace fec::ui
