#pragma once

// Paper-style figures: a grid of panels (rows = images, columns = views) with titles, row labels,
// optional legends and a caption, written as PNG, SVG or PDF.
//
// Text layout needs fonts, so a QGuiApplication must exist before any function here is called
// (QT_QPA_PLATFORM=offscreen is enough on a machine without a display).

#include <utility>
#include <vector>

#include <QColor>
#include <QImage>
#include <QString>

#include <opencv2/core.hpp>

namespace fec::figure {

/// One picture of the grid with the title shown above it (e.g. "Level 2 · 196 clusters (9 empty)").
struct FigurePanel {
    QString title;
    QImage image; ///< drawn scaled to fit the panel, aspect kept; a null image leaves a grey box
};

/// Colour swatches with their meaning, drawn under a row.
struct FigureLegend {
    std::vector<std::pair<QColor, QString>> entries;
};

/// One row of the grid: usually one input image and its views.
struct FigureRow {
    QString label; ///< drawn left of the row; may be empty
    std::vector<FigurePanel> panels;
    FigureLegend legend; ///< optional: nothing is drawn when it has no entries
};

struct FigureOptions {
    int panelSize = 256; ///< longest side of a panel in pixels at 96 dpi (i.e. 1/96 inch units)
    int dpi = 300;       ///< PNG pixels per inch and PDF resolution; SVG is written at 96 dpi
    QString caption;     ///< wrapped under the grid; may be empty
};

/// Writes the figure in the format of the path's extension (.png, .svg or .pdf, any case),
/// atomically: a reader sees the old file or the complete new one. PNG is a raster at `dpi`
/// (the physical size is the same for every dpi); SVG embeds the images as PNG and keeps titles,
/// labels and caption as <text>; PDF is one page of the figure's size with real text and one
/// image object per panel. Needs a QGuiApplication. Throws std::runtime_error naming the file on
/// any failure (unknown extension, nothing to draw, encoding or I/O error).
void writeFigure(const std::vector<FigureRow>& rows, const QString& path, const FigureOptions& options = {});

/// Deep copy of an 8-bit RGB (CV_8UC3) or grey (CV_8UC1) image; a null QImage for an empty Mat.
/// Throws std::invalid_argument for other types.
QImage toQImage(const cv::Mat& rgb);

} // namespace fec::figure
