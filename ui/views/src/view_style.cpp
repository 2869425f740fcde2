#include "view_style.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <QWidget>

#include "fec/explain/concepts.h"
#include "fec/ui/highlight.h"
#include "fec/ui/image_view.h"
#include "fec/ui/selection_model.h"

namespace fec::ui::style {

bool isDark(const QPalette& palette)
{
    return palette.color(QPalette::Window).lightnessF() < 0.5;
}

QColor accent(const QPalette& palette)
{
    return isDark(palette) ? QColor(86, 180, 233) : QColor(0, 114, 178);
}

QColor accent2(const QPalette& palette)
{
    return isDark(palette) ? QColor(240, 150, 90) : QColor(213, 94, 0);
}

QColor sequential(double t)
{
    // Viridis sampled at 9 stops, linearly interpolated.
    static constexpr std::array<std::array<int, 3>, 9> stops{{{68, 1, 84},
                                                              {71, 44, 122},
                                                              {59, 81, 139},
                                                              {44, 113, 142},
                                                              {33, 144, 141},
                                                              {39, 173, 129},
                                                              {92, 200, 99},
                                                              {170, 220, 50},
                                                              {253, 231, 37}}};
    if (!std::isfinite(t))
        t = 0;
    t = std::clamp(t, 0.0, 1.0) * (stops.size() - 1);
    const auto i = std::min(static_cast<size_t>(t), stops.size() - 2);
    const double f = t - static_cast<double>(i);
    const auto mix = [&](int c) { return static_cast<int>(std::lround(stops[i][c] * (1 - f) + stops[i + 1][c] * f)); };
    return QColor(mix(0), mix(1), mix(2));
}

QColor textOn(const QColor& background)
{
    // Relative luminance (sRGB approximation): dark text on light backgrounds.
    const double y = 0.2126 * background.redF() + 0.7152 * background.greenF() + 0.0722 * background.blueF();
    return y > 0.45 ? QColor(20, 20, 20) : QColor(245, 245, 245);
}

}  // namespace fec::ui::style

namespace fec::ui {

bool readyToRender(const QWidget& panel, ImageView& view, bool hasResult, QImage& rendered, bool& dirty)
{
    if (!hasResult) {
        rendered = QImage();
        view.setImage(QImage());
        view.setCaption(QString());
        dirty = false;
        return false;
    }
    // Hidden panels (other tabs) draw when they are shown.
    dirty = !panel.isVisible();
    return !dirty;
}

bool showSelection(ImageView& view, const SegmentPyramid* pyramid, const SelectionModel* selection)
{
    if (!pyramid || !selection) {
        view.setHighlight({});
        return false;
    }
    view.setHighlight(makeHighlight(*pyramid, selection->selectedNode(), selection->hoveredNode()));
    return true;
}

std::vector<int32_t> conceptsOrError(const explain::Atlas& atlas, const SegmentPyramid& pyramid, QString& error)
{
    error.clear();
    try {
        return explain::segmentConcepts(atlas, pyramid);
    } catch (const std::exception& e) {
        error = QString::fromStdString(e.what());
        return {};
    }
}

}  // namespace fec::ui
