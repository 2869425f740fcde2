#pragma once

// Light and dark palettes (Fusion style) that keep every panel readable.

#include <QString>

class QApplication;

namespace fec::ui {

enum class Theme { System, Light, Dark };

Theme themeFromString(const QString& name);
QString themeName(Theme theme);
/// Applies the style, palette and small style-sheet tweaks to the whole application.
void applyTheme(Theme theme);

}  // namespace fec::ui
