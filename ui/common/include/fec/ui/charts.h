#pragma once

// Titled QCustomPlot charts, set up and coloured the same way in every view that draws them
// (the training curves, the statistics view). QCustomPlot itself is included through
// fec/ui/qcustomplot_wrapper.h by the .cpp files that need it.

#include <QSize>
#include <QString>

class QCPTextElement;
class QCustomPlot;
class QPalette;
class QWidget;

namespace fec::ui {

/// A QCustomPlot with a title element in a row above its axis rect.
struct TitledPlot {
    QCustomPlot* plot = nullptr;
    QCPTextElement* title = nullptr;
};

/// A new plot, child of `parent`: `minimumSize`, drag to pan and wheel to zoom, `toolTip`, the
/// title (the plot's font, bold) and the axis labels.
TitledPlot createTitledPlot(QWidget* parent, const QString& title, const QString& xLabel, const QString& yLabel,
                            const QSize& minimumSize, const QString& toolTip);

/// Colours the background, the four axes with their grids, the title and the legend from
/// `palette` (WindowText and Base): the screen's palette, or a print look for exports.
void applyChartPalette(const TitledPlot& chart, const QPalette& palette);

}  // namespace fec::ui
