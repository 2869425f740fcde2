#include "fec/figure/figure.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <ATen/ATen.h>

#include <QBuffer>
#include <QByteArray>
#include <QFile>
#include <QFileInfo>
#include <QFont>
#include <QFontMetricsF>
#include <QGuiApplication>
#include <QPageLayout>
#include <QPageSize>
#include <QPainter>
#include <QPdfWriter>
#include <QRectF>
#include <QSvgGenerator>

#include "fec/atomic_file.h"
#include "fec/text.h"

namespace fec::figure {

namespace {

// Layout units are pixels at 96 dpi; each output scales them to its own resolution.
constexpr double kLogicalDpi = 96.0;
constexpr double kMargin = 16;
constexpr double kGap = 10;
constexpr double kTitleGap = 4;
constexpr double kLegendSwatch = 11;
const QColor kMissingPanel(220, 220, 220);

QFont makeFont(int pixelSize, bool bold = false)
{
    QFont font(QStringLiteral("DejaVu Sans"));
    font.setStyleHint(QFont::SansSerif);
    font.setPixelSize(pixelSize);
    font.setBold(bold);
    return font;
}

struct Fonts {
    QFont title = makeFont(13);
    QFont rowLabel = makeFont(14, true);
    QFont legend = makeFont(12);
    QFont caption = makeFont(13);
};

double wrappedHeight(const QFont& font, const QString& text, double width)
{
    if (text.isEmpty())
        return 0;
    const QFontMetricsF metrics(font);
    return metrics.boundingRect(QRectF(0, 0, width, 1e6), Qt::TextWordWrap, text).height();
}

struct LegendItem {
    QRectF swatch, text;
};

struct RowLayout {
    double top = 0;
    QRectF label;
    std::vector<QRectF> titles, panels;
    std::vector<LegendItem> legend;
};

struct Layout {
    double width = 0, height = 0;
    std::vector<RowLayout> rows;
    QRectF caption;
};

std::vector<LegendItem> layoutLegend(const Fonts& fonts, const FigureLegend& legend, double left, double top,
                                     double width, double* height)
{
    std::vector<LegendItem> items;
    const QFontMetricsF metrics(fonts.legend);
    const double lineHeight = std::max(metrics.height(), kLegendSwatch) + 4;
    double x = left, y = top;
    for (const auto& entry : legend.entries) {
        const double textWidth = std::min(metrics.horizontalAdvance(entry.second) + 2, width - kLegendSwatch - 6);
        const double itemWidth = kLegendSwatch + 6 + textWidth;
        if (x > left && x + itemWidth > left + width) {
            x = left;
            y += lineHeight;
        }
        LegendItem item;
        item.swatch = QRectF(x, y + (lineHeight - kLegendSwatch) / 2, kLegendSwatch, kLegendSwatch);
        item.text = QRectF(x + kLegendSwatch + 6, y, textWidth, lineHeight);
        items.push_back(item);
        x += itemWidth + 14;
    }
    *height = legend.entries.empty() ? 0 : y + lineHeight - top;
    return items;
}

Layout layoutFigure(const std::vector<FigureRow>& rows, const FigureOptions& options, const Fonts& fonts)
{
    const double panel = options.panelSize;
    size_t columns = 0;
    bool anyLabel = false;
    double labelWidth = 0;
    const QFontMetricsF labelMetrics(fonts.rowLabel);
    for (const auto& row : rows) {
        columns = std::max(columns, row.panels.size());
        if (!row.label.isEmpty()) {
            anyLabel = true;
            for (const auto& word : row.label.split(QLatin1Char(' ')))
                labelWidth = std::max(labelWidth, labelMetrics.horizontalAdvance(word));
            labelWidth = std::max(labelWidth, std::min(labelMetrics.horizontalAdvance(row.label), panel * 0.6));
        }
    }
    labelWidth = anyLabel ? std::ceil(labelWidth) + 2 : 0;
    const double gridLeft = kMargin + (anyLabel ? labelWidth + kGap : 0);
    const double gridWidth = columns * panel + (columns > 0 ? (columns - 1) * kGap : 0);

    double titleHeight = 0;
    for (const auto& row : rows)
        for (const auto& p : row.panels)
            titleHeight = std::max(titleHeight, wrappedHeight(fonts.title, p.title, panel));
    const double titleBlock = titleHeight > 0 ? std::ceil(titleHeight) + kTitleGap : 0;

    Layout layout;
    layout.width = std::ceil(gridLeft + gridWidth + kMargin);
    double y = kMargin;
    for (const auto& row : rows) {
        RowLayout r;
        r.top = y;
        const double panelTop = y + titleBlock;
        // A row is as tall as its tallest picture once fitted into panel x panel, so that a row of
        // landscape photos leaves no empty band.
        double height = 0;
        for (const auto& p : row.panels)
            if (!p.image.isNull())
                height = std::max(
                    height, std::ceil(panel * std::min(1.0, static_cast<double>(p.image.height()) / p.image.width())));
        if (height <= 0)
            height = panel;
        for (size_t c = 0; c < row.panels.size(); ++c) {
            const double x = gridLeft + c * (panel + kGap);
            r.titles.emplace_back(x, y, panel, titleHeight);
            r.panels.emplace_back(x, panelTop, panel, height);
        }
        if (anyLabel)
            r.label = QRectF(kMargin, panelTop, labelWidth, height);
        double legendHeight = 0;
        r.legend = layoutLegend(fonts, row.legend, gridLeft, panelTop + height + 6, gridWidth, &legendHeight);
        y = panelTop + height + (legendHeight > 0 ? 6 + legendHeight : 0) + kGap * 2;
        layout.rows.push_back(std::move(r));
    }
    y -= kGap * 2;
    if (!options.caption.isEmpty()) {
        const double width = layout.width - 2 * kMargin;
        const double height = std::ceil(wrappedHeight(fonts.caption, options.caption, width));
        layout.caption = QRectF(kMargin, y + kGap * 1.5, width, height);
        y = layout.caption.bottom();
    }
    layout.height = std::ceil(y + kMargin);
    return layout;
}

// The image fitted into a square panel, aspect kept and centred.
QRectF fitted(const QImage& image, const QRectF& box)
{
    const double scale = std::min(box.width() / image.width(), box.height() / image.height());
    const double w = image.width() * scale, h = image.height() * scale;
    return QRectF(box.x() + (box.width() - w) / 2, box.y() + (box.height() - h) / 2, w, h);
}

// Larger images are reduced (smoothly) to the device pixels they will cover; smaller ones are
// kept, so that label maps are enlarged without blurring their edges.
QImage forDevice(const QImage& image, const QRectF& target, double deviceScale)
{
    const QSize device(static_cast<int>(std::ceil(target.width() * deviceScale)),
                       static_cast<int>(std::ceil(target.height() * deviceScale)));
    if (image.width() > device.width() || image.height() > device.height())
        return image.scaled(device, Qt::KeepAspectRatio, Qt::SmoothTransformation);
    return image;
}

void paintFigure(QPainter& painter, const std::vector<FigureRow>& rows, const Layout& layout,
                 const FigureOptions& options, const Fonts& fonts, double deviceScale)
{
    painter.fillRect(QRectF(0, 0, layout.width, layout.height), Qt::white);
    painter.setPen(Qt::black);
    for (size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows[r];
        const auto& rl = layout.rows[r];
        if (!row.label.isEmpty()) {
            painter.setFont(fonts.rowLabel);
            painter.drawText(rl.label, Qt::AlignRight | Qt::AlignVCenter | Qt::TextWordWrap, row.label);
        }
        for (size_t c = 0; c < row.panels.size(); ++c) {
            const auto& p = row.panels[c];
            if (!p.title.isEmpty()) {
                painter.setFont(fonts.title);
                painter.drawText(rl.titles[c], Qt::AlignHCenter | Qt::AlignBottom | Qt::TextWordWrap, p.title);
            }
            if (p.image.isNull()) {
                painter.fillRect(rl.panels[c], kMissingPanel);
                continue;
            }
            const QRectF target = fitted(p.image, rl.panels[c]);
            painter.drawImage(target, forDevice(p.image, target, deviceScale));
        }
        painter.setFont(fonts.legend);
        for (size_t i = 0; i < rl.legend.size(); ++i) {
            const auto& [colour, text] = row.legend.entries[i];
            painter.fillRect(rl.legend[i].swatch, colour);
            painter.setPen(QColor(80, 80, 80));
            painter.drawRect(rl.legend[i].swatch);
            painter.setPen(Qt::black);
            painter.drawText(rl.legend[i].text, Qt::AlignLeft | Qt::AlignVCenter, text);
        }
    }
    if (!options.caption.isEmpty()) {
        painter.setFont(fonts.caption);
        painter.drawText(layout.caption, Qt::AlignLeft | Qt::AlignTop | Qt::TextWordWrap, options.caption);
    }
}

[[noreturn]] void fail(const QString& path, const QString& why)
{
    throw std::runtime_error((path + QStringLiteral(": ") + why).toStdString());
}

QByteArray renderPng(const std::vector<FigureRow>& rows, const Layout& layout, const FigureOptions& options,
                     const Fonts& fonts, const QString& path)
{
    const double scale = options.dpi / kLogicalDpi;
    const QSize size(static_cast<int>(std::lround(layout.width * scale)),
                     static_cast<int>(std::lround(layout.height * scale)));
    QImage image(size, QImage::Format_RGB32);
    if (image.isNull())
        fail(path, QStringLiteral("the figure is too large for a %1x%2 raster").arg(size.width()).arg(size.height()));
    const int dotsPerMeter = static_cast<int>(std::lround(options.dpi / 0.0254));
    image.setDotsPerMeterX(dotsPerMeter);
    image.setDotsPerMeterY(dotsPerMeter);
    {
        QPainter painter(&image);
        painter.setRenderHint(QPainter::Antialiasing);
        painter.setRenderHint(QPainter::TextAntialiasing);
        painter.scale(scale, scale);
        paintFigure(painter, rows, layout, options, fonts, scale);
    }
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    if (!image.save(&buffer, "PNG"))
        fail(path, QStringLiteral("cannot encode the figure as PNG"));
    return bytes;
}

QByteArray renderSvg(const std::vector<FigureRow>& rows, const Layout& layout, const FigureOptions& options,
                     const Fonts& fonts, const QString& path)
{
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    QSvgGenerator generator;
    generator.setOutputDevice(&buffer);
    const QSize size(static_cast<int>(layout.width), static_cast<int>(layout.height));
    generator.setSize(size);
    generator.setViewBox(QRect(QPoint(0, 0), size));
    generator.setResolution(static_cast<int>(kLogicalDpi));
    generator.setTitle(QFileInfo(path).completeBaseName());
    generator.setDescription(options.caption);
    QPainter painter;
    if (!painter.begin(&generator))
        fail(path, QStringLiteral("cannot start the SVG writer"));
    paintFigure(painter, rows, layout, options, fonts, options.dpi / kLogicalDpi);
    painter.end();
    return bytes;
}

QByteArray renderPdf(const std::vector<FigureRow>& rows, const Layout& layout, const FigureOptions& options,
                     const Fonts& fonts, const QString& path)
{
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    QPdfWriter writer(&buffer);
    writer.setResolution(options.dpi);
    writer.setCreator(QStringLiteral("FEC Explorer"));
    writer.setTitle(options.caption.isEmpty() ? QFileInfo(path).completeBaseName() : options.caption);
    const QPageSize page(QSizeF(layout.width / kLogicalDpi * 72.0, layout.height / kLogicalDpi * 72.0),
                         QPageSize::Point, QString(), QPageSize::ExactMatch);
    if (!writer.setPageLayout(QPageLayout(page, QPageLayout::Portrait, QMarginsF(0, 0, 0, 0))))
        fail(path, QStringLiteral("the PDF writer refused a %1x%2 page").arg(layout.width).arg(layout.height));
    QPainter painter;
    if (!painter.begin(&writer))
        fail(path, QStringLiteral("cannot start the PDF writer"));
    const double scale = options.dpi / kLogicalDpi;
    painter.scale(scale, scale);
    paintFigure(painter, rows, layout, options, fonts, scale);
    painter.end();
    return bytes;
}

}  // namespace

void writeFigure(const std::vector<FigureRow>& rows, const QString& path, const FigureOptions& options)
{
    writeFigure(rows, std::filesystem::path(QFile::encodeName(path).toStdString()), options);
}

void writeFigure(const std::vector<FigureRow>& rows, const std::filesystem::path& file, const FigureOptions& options)
{
    // The path stays bytes down to the write: a QString cannot hold a name that is not UTF-8.
    // `path` is only what messages show.
    const QString path = QString::fromStdString(printablePath(file));
    if (!qobject_cast<QGuiApplication*>(QCoreApplication::instance()))
        fail(path, QStringLiteral("writing a figure needs a QGuiApplication (fonts)"));
    if (rows.empty() || std::all_of(rows.begin(), rows.end(), [](const FigureRow& r) { return r.panels.empty(); }))
        fail(path, QStringLiteral("the figure has no panels"));
    if (options.panelSize < 8 || options.dpi < 10 || options.dpi > 2400)
        fail(path, QStringLiteral("panel size must be at least 8 px and dpi between 10 and 2400"));

    const QString suffix =
        QFileInfo(QFile::decodeName(QByteArray::fromStdString(file.filename().string()))).suffix().toLower();
    const Fonts fonts;
    const Layout layout = layoutFigure(rows, options, fonts);
    QByteArray bytes;
    if (suffix == QLatin1String("png"))
        bytes = renderPng(rows, layout, options, fonts, path);
    else if (suffix == QLatin1String("svg"))
        bytes = renderSvg(rows, layout, options, fonts, path);
    else if (suffix == QLatin1String("pdf"))
        bytes = renderPdf(rows, layout, options, fonts, path);
    else
        fail(path, QStringLiteral("unsupported figure format '%1' (use .png, .svg or .pdf)").arg(suffix));
    if (bytes.isEmpty())
        fail(path, QStringLiteral("the %1 writer produced nothing").arg(suffix.toUpper()));
    writeFileAtomic(file.string(), bytes.constData(), static_cast<size_t>(bytes.size()));
}

QImage toQImage(const cv::Mat& rgb)
{
    if (rgb.empty())
        return {};
    if (rgb.type() == CV_8UC3)
        return QImage(rgb.data, rgb.cols, rgb.rows, static_cast<qsizetype>(rgb.step), QImage::Format_RGB888).copy();
    if (rgb.type() == CV_8UC1)
        return QImage(rgb.data, rgb.cols, rgb.rows, static_cast<qsizetype>(rgb.step), QImage::Format_Grayscale8).copy();
    throw std::invalid_argument("toQImage: expected an 8-bit RGB or grey image");
}

FigureRow explanationRow(const explain::Explanation& explanation, const QString& label, const std::vector<int>& levels,
                         const std::vector<int>& ks, const imaging::OverlayStyle& style,
                         const std::function<bool(const QString&)>& progress)
{
    const auto step = [&progress](const QString& what) { return !progress || progress(what); };
    FigureRow row;
    row.label = label;
    if (!step(QStringLiteral("Drawing the image")))
        return row;
    row.panels.push_back({QStringLiteral("Image"), toQImage(explanation.image)});
    const auto draw = [&](const explain::Segmentation& s) {
        const auto overlay =
            imaging::overlay(explanation.image, s.labels, explanation.prepared.mapping, style, s.colourOf);
        row.panels.push_back({QString::fromStdString(s.caption), toQImage(overlay)});
    };
    for (int l : levels) {
        if (!step(QStringLiteral("Drawing level %1").arg(l)))
            return row;
        draw(explain::levelSegmentation(explanation.pyramid, l));
    }
    for (int k : ks) {
        if (!step(QStringLiteral("K-means with k = %1").arg(k)))
            return row;
        if (!explanation.merger)
            throw std::invalid_argument("K-means is unavailable: the last pool has no features");
        draw(explain::kmeansSegmentation(*explanation.merger, k));
    }
    return row;
}

FigureLegend divergingLegend(double range, const QString& unit)
{
    const auto colour = [](double t) {
        const auto c = imaging::divergingColour(t);
        return QColor(c[0], c[1], c[2]);
    };
    const auto value = [&unit](double v) { return QString::number(v, 'g', 3) + unit; };
    FigureLegend legend;
    legend.entries = {{colour(-1), value(-range)},
                      {colour(-0.5), value(-range / 2)},
                      {colour(0), QStringLiteral("0")},
                      {colour(0.5), value(range / 2)},
                      {colour(1), value(range)}};
    return legend;
}

FigureRow evidenceRow(const explain::Explanation& e, const explain::EvidenceReport& report, const QString& label,
                      const QString& className, const QString& versusName)
{
    const auto maxAbs = [](const at::Tensor& t) { return std::max(1e-12, t.abs().max().item<double>()); };
    const QString what = versusName.isEmpty() ? className : QStringLiteral("%1 vs %2").arg(className, versusName);
    FigureRow row;
    row.label = label;
    row.panels.push_back(
        {QStringLiteral("Image · logit %1 = %2").arg(what).arg(report.maps.logit, 0, 'f', 3), toQImage(e.image)});
    const double totalRange = maxAbs(report.maps.total);
    row.panels.push_back(
        {QStringLiteral("Level %1 segments (±%2)").arg(e.pyramid.levelCount()).arg(totalRange, 0, 'g', 3),
         toQImage(imaging::divergingOverlay(e.image, report.maps.total, e.prepared.mapping, totalRange))});
    const double densityRange = maxAbs(report.maps.density);
    row.panels.push_back(
        {QStringLiteral("Density per pixel (±%1)").arg(densityRange, 0, 'g', 3),
         toQImage(imaging::divergingOverlay(e.image, report.maps.density, e.prepared.mapping, densityRange))});
    // Ablation effects of the level below the last, painted per segment.
    const int level = std::max(1, e.pyramid.levelCount() - 1);
    std::vector<double> effect;
    for (const auto& s : report.segments)
        if (s.level == level && !std::isnan(s.effect))
            effect.push_back(s.effect);
    const auto& lv = e.pyramid.levels[static_cast<size_t>(level - 1)];
    if (effect.size() == lv.nonEmpty.size() && !effect.empty()) {
        auto blocks = at::empty({e.pyramid.blockH, e.pyramid.blockW}, at::kFloat);
        auto* b = blocks.data_ptr<float>();
        double range = 1e-12;
        for (double v : effect)
            range = std::max(range, std::abs(v));
        for (size_t i = 0; i < lv.blockLabel.size(); ++i)
            b[i] = static_cast<float>(effect[static_cast<size_t>(lv.compact[static_cast<size_t>(lv.blockLabel[i])])]);
        row.panels.push_back({QStringLiteral("Level %1 ablation effects (±%2)").arg(level).arg(range, 0, 'g', 3),
                              toQImage(imaging::divergingOverlay(e.image, blocks, e.prepared.mapping, range))});
    }
    // Each panel has its own symmetric range (in its title): the legend gives the colours' meaning.
    const auto colour = [](double t) {
        const auto c = imaging::divergingColour(t);
        return QColor(c[0], c[1], c[2]);
    };
    row.legend.entries = {{colour(-1), QStringLiteral("−range: against %1").arg(what)},
                          {colour(-0.5), QStringLiteral("−range/2")},
                          {colour(0), QStringLiteral("0 (no evidence)")},
                          {colour(0.5), QStringLiteral("+range/2")},
                          {colour(1), QStringLiteral("+range: for %1").arg(what)}};
    return row;
}

}  // namespace fec::figure
