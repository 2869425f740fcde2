#pragma once

// Colours shared by the secondary views, chosen from the widget palette so that light and dark
// themes both stay readable; and the steps every image view takes the same way (draw only when
// shown, show the linked selection).

#include <cstdint>
#include <vector>

#include <QColor>
#include <QImage>
#include <QPalette>
#include <QString>

class QWidget;

namespace fec {
struct SegmentPyramid;
}
namespace fec::explain {
struct Atlas;
}

namespace fec::ui::style {

/// True when the palette's window colour is dark.
bool isDark(const QPalette& palette);
/// Main data colour (bars, histograms): Okabe-Ito blue, lighter on dark palettes.
QColor accent(const QPalette& palette);
/// Second data colour (empty clusters): Okabe-Ito vermillion, lighter on dark palettes.
QColor accent2(const QPalette& palette);
/// Sequential colour map (viridis) for a value in [0, 1] (clamped).
QColor sequential(double t);
/// Black or white, whichever reads better on `background`.
QColor textOn(const QColor& background);

}  // namespace fec::ui::style

namespace fec::ui {

class ImageView;
class SelectionModel;

/// The start of an image view's render(). Without a result: clears `view` (image and caption) and
/// `rendered`, clears `dirty` and returns false. While `panel` is hidden (another tab): sets `dirty`
/// (its showEvent renders then) and returns false. Otherwise clears `dirty` and returns true.
bool readyToRender(const QWidget& panel, ImageView& view, bool hasResult, QImage& rendered, bool& dirty);

/// Shows the linked selection (the selected node's region, the hovered node's outline) on `view`.
/// Without a pyramid or a selection model it clears the highlight and returns false.
bool showSelection(ImageView& view, const SegmentPyramid* pyramid, const SelectionModel* selection);

/// explain::segmentConcepts for a view: the concept of every non-empty segment of the atlas level,
/// or none and the reason in `error` (another architecture).
std::vector<int32_t> conceptsOrError(const explain::Atlas& atlas, const SegmentPyramid& pyramid, QString& error);

}  // namespace fec::ui
