#pragma once

#include <filesystem>

// Paper-style figures: a grid of panels (rows = images, columns = views) with titles, row labels,
// optional legends and a caption, written as PNG, SVG or PDF.
//
// Text layout needs fonts, so a QGuiApplication must exist before any function here is called
// (QT_QPA_PLATFORM=offscreen is enough on a machine without a display).

#include <functional>
#include <utility>
#include <vector>

#include <QColor>
#include <QImage>
#include <QString>

#include <opencv2/core.hpp>

#include "fec/explain/explain.h"
#include "fec/explain/segment_evidence.h"
#include "fec/imaging/render.h"

namespace fec::figure {

/// One picture of the grid with the title shown above it (e.g. "Level 2 · 196 clusters (9 empty)").
struct FigurePanel {
    QString title;
    QImage image;  ///< drawn scaled to fit the panel, aspect kept; a null image leaves a grey box
};

/// Colour swatches with their meaning, drawn under a row.
struct FigureLegend {
    std::vector<std::pair<QColor, QString>> entries;
};

/// One row of the grid: usually one input image and its views.
struct FigureRow {
    QString label;  ///< drawn left of the row; may be empty
    std::vector<FigurePanel> panels;
    FigureLegend legend;  ///< optional: nothing is drawn when it has no entries
};

struct FigureOptions {
    int panelSize = 256;  ///< longest side of a panel in pixels at 96 dpi (i.e. 1/96 inch units)
    int dpi = 300;        ///< PNG pixels per inch and PDF resolution; SVG is written at 96 dpi
    QString caption;      ///< wrapped under the grid; may be empty
};

/// Writes the figure in the format of the path's extension (.png, .svg or .pdf, any case),
/// atomically: a reader sees the old file or the complete new one. PNG is a raster at `dpi`
/// (the physical size is the same for every dpi); SVG embeds the images as PNG and keeps titles,
/// labels and caption as <text>; PDF is one page of the figure's size with real text and one
/// image object per panel. Needs a QGuiApplication. Throws std::runtime_error naming the file on
/// any failure (unknown extension, nothing to draw, encoding or I/O error).
void writeFigure(const std::vector<FigureRow>& rows, const QString& path, const FigureOptions& options = {});
/// writeFigure() at a path kept as bytes: file names that are not UTF-8 (possible on Linux) are
/// written exactly; messages show them escaped (fec::printablePath).
void writeFigure(const std::vector<FigureRow>& rows, const std::filesystem::path& path,
                 const FigureOptions& options = {});

/// Deep copy of an 8-bit RGB (CV_8UC3) or grey (CV_8UC1) image; a null QImage for an empty Mat.
/// Throws std::invalid_argument for other types.
QImage toQImage(const cv::Mat& rgb);

/// The paper-style row of one explanation, as `fec explain` and the export dialog draw it: the
/// image, then each level in `levels` (1-based), then each K-means merge in `ks`, every panel an
/// overlay in `style` titled with its caption. `progress(step)` is called before each panel and
/// returns false to stop (the row is then incomplete and should be dropped). Throws
/// std::invalid_argument for a level or k out of range.
FigureRow explanationRow(const explain::Explanation& explanation, const QString& label, const std::vector<int>& levels,
                         const std::vector<int>& ks, const imaging::OverlayStyle& style = {},
                         const std::function<bool(const QString&)>& progress = {});

/// The evidence row of one explanation for one class (or "class versus class"): the image, the
/// last level's segments coloured by their exact contribution, the evidence density, and the
/// ablation effects of the level below (when computed), each on a diverging scale symmetric around
/// zero (blue negative, red positive, zero transparent) with its range in the title and a legend.
FigureRow evidenceRow(const explain::Explanation& explanation, const explain::EvidenceReport& report,
                      const QString& label, const QString& className, const QString& versusName = {});

/// A legend for a diverging scale: -range (blue), 0, +range (red), with `unit` after the values.
FigureLegend divergingLegend(double range, const QString& unit = {});

}  // namespace fec::figure
