#pragma once

// Colours shared by the secondary views, chosen from the widget palette so that light and dark
// themes both stay readable.

#include <QColor>
#include <QPalette>

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
