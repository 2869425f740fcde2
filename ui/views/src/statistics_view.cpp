#include "fec/ui/statistics_view.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <QEvent>
#include <QFileInfo>
#include <QGridLayout>
#include <QLabel>
#include <QPdfWriter>
#include <QSaveFile>
#include <QScrollArea>
#include <QVBoxLayout>

#include "fec/ui/charts.h"
#include "fec/ui/qcustomplot_wrapper.h"
#include "view_style.h"

namespace fec::ui {

int Histogram::total() const
{
    return std::accumulate(counts.begin(), counts.end(), 0);
}

namespace {

constexpr int kColumns = 2;
constexpr int kExportCellW = 560, kExportCellH = 360;  // logical pixels per plot in exports
constexpr int kExportScale = 2;                        // PNG pixels per logical pixel

// Linear bins from 0 (or the smallest value) to the largest value.
Histogram linearHistogram(const std::vector<double>& values, int bins)
{
    Histogram h;
    if (values.empty())
        return h;
    const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
    const double a = std::min(*lo, 0.0);
    const double b = *hi > a ? *hi : a + 1;
    for (int i = 0; i <= bins; ++i)
        h.edges.push_back(a + (b - a) * i / bins);
    return h;
}

// Segment sizes are whole numbers of pixel blocks: bins of a whole number of blocks (one block
// when the range is narrow), so that no bin falls between two possible sizes.
Histogram sizeBins(const std::vector<double>& blockCounts, double pixelsPerBlock)
{
    Histogram h;
    if (blockCounts.empty())
        return h;
    const auto [lo, hi] = std::minmax_element(blockCounts.begin(), blockCounts.end());
    const long a = std::max(1L, std::lround(*lo)), b = std::max(a, std::lround(*hi));
    const long width = std::max(1L, static_cast<long>(std::ceil((b - a + 1) / 30.0)));
    for (long n = a;; n += width) {
        h.edges.push_back((n - 0.5) * pixelsPerBlock);
        if (n > b)
            break;
    }
    return h;
}

void fill(Histogram& h, const std::vector<double>& values)
{
    const int bins = static_cast<int>(h.edges.size()) - 1;
    h.counts.assign(std::max(bins, 0), 0);
    for (double v : values) {
        const auto it = std::upper_bound(h.edges.begin(), h.edges.end(), v);
        const int bin = static_cast<int>(it - h.edges.begin()) - 1;
        ++h.counts[std::clamp(bin, 0, bins - 1)];
    }
}

struct PlotInfo {
    QCustomPlot* plot = nullptr;
    QCPTextElement* title = nullptr;
    QCPRange keyRange, valueRange;  // the "home" view, restored by a double click
    bool hasData = false;
};

// Colours axes, grid, text and data from a palette. `light` forces the print look used by exports.
void stylePlot(const PlotInfo& info, const QPalette& palette)
{
    auto* plot = info.plot;
    applyChartPalette({info.plot, info.title}, palette);
    const QColor text = palette.color(QPalette::WindowText);
    const QColor accent = style::accent(palette);
    QColor fill = accent;
    fill.setAlpha(style::isDark(palette) ? 120 : 90);
    for (int i = 0; i < plot->plottableCount(); ++i) {
        auto* p = plot->plottable(i);
        const bool second = p->property("fecSecondColour").toBool();
        const QColor c = second ? style::accent2(palette) : accent;
        QColor f = c;
        f.setAlpha(fill.alpha());
        p->setPen(QPen(c, 1.5));
        p->setBrush(f);
    }
    for (int i = 0; i < plot->itemCount(); ++i)
        if (auto* label = qobject_cast<QCPItemText*>(plot->item(i)))
            label->setColor(text);
}

}  // namespace

struct StatisticsView::Private {
    ExplainResultPtr result;
    QScrollArea* scroll = nullptr;
    QWidget* canvas = nullptr;
    QGridLayout* grid = nullptr;
    QLabel* placeholder = nullptr;
    std::vector<PlotInfo> plots;
    std::vector<Histogram> sizeHists, marginHists;

    PlotInfo& addPlot(QWidget* parent, const QString& title, const QString& xLabel, const QString& yLabel)
    {
        PlotInfo info;
        const auto chart = createTitledPlot(parent, title, xLabel, yLabel, QSize(320, 250),
                                            QObject::tr("Drag to pan, wheel to zoom, double-click to reset"));
        info.plot = chart.plot;
        info.title = chart.title;
        plots.push_back(info);
        return plots.back();
    }

    void finishPlot(PlotInfo& info)
    {
        info.keyRange = info.plot->xAxis->range();
        info.valueRange = info.plot->yAxis->range();
        auto* plot = info.plot;
        const auto keyRange = info.keyRange, valueRange = info.valueRange;
        QObject::connect(plot, &QCustomPlot::mouseDoubleClick, plot, [plot, keyRange, valueRange](QMouseEvent*) {
            plot->xAxis->setRange(keyRange);
            plot->yAxis->setRange(valueRange);
            plot->replot();
        });
    }

    void histogramPlot(QWidget* parent, const Histogram& h, const QString& title, const QString& xLabel,
                       const QString& yLabel)
    {
        auto& info = addPlot(parent, title, xLabel, yLabel);
        auto* plot = info.plot;
        if (h.counts.empty()) {
            finishPlot(info);
            return;
        }
        auto* graph = plot->addGraph();
        graph->setLineStyle(QCPGraph::lsStepLeft);
        QVector<double> keys(h.edges.begin(), h.edges.end());
        QVector<double> values(h.counts.begin(), h.counts.end());
        values.push_back(h.counts.back());  // closes the last step
        graph->setData(keys, values, true);
        graph->setName(title);
        const double pad = (h.edges.back() - h.edges.front()) * 0.03;
        plot->xAxis->setRange(h.edges.front() - pad, h.edges.back() + pad);
        const int top = *std::max_element(h.counts.begin(), h.counts.end());
        plot->yAxis->setRange(0, std::max(1.0, top * 1.12));
        info.hasData = true;
        finishPlot(info);
    }

    void rebuild(QWidget* self)
    {
        for (auto& info : plots)
            delete info.plot;
        plots.clear();
        sizeHists.clear();
        marginHists.clear();
        placeholder->setVisible(!result);
        canvas->setVisible(bool(result));
        if (!result)
            return;
        const auto& pyramid = result->pyramid;
        const int levels = pyramid.levelCount();
        const double pixelsPerBlock = static_cast<double>(pyramid.blockSize) * pyramid.blockSize;
        for (int l = 1; l <= levels; ++l) {
            std::vector<double> blocks, pixels;
            for (int id : pyramid.levelNodes[l - 1]) {
                blocks.push_back(static_cast<double>(pyramid.nodes[id].blocks));
                pixels.push_back(static_cast<double>(pyramid.nodes[id].pixels));
            }
            sizeHists.push_back(sizeBins(blocks, pixelsPerBlock));
            fill(sizeHists.back(), pixels);
            std::vector<double> margins;
            if (l - 1 < static_cast<int>(pyramid.margin.size()))
                margins.assign(pyramid.margin[l - 1].begin(), pyramid.margin[l - 1].end());
            marginHists.push_back(linearHistogram(margins, 30));
            fill(marginHists.back(), margins);
        }

        for (int l = 1; l <= levels; ++l) {
            const auto& lv = pyramid.levels[l - 1];
            histogramPlot(canvas, sizeHists[l - 1],
                          QObject::tr("Level %1 · segment sizes (%2 segments)").arg(l).arg(lv.nonEmpty.size()),
                          QObject::tr("segment size (model-input pixels)"), QObject::tr("segments"));
            histogramPlot(canvas, marginHists[l - 1],
                          QObject::tr("Level %1 · assignment margins (%2x%3 grid)").arg(l).arg(lv.gridH).arg(lv.gridW),
                          QObject::tr("margin: best minus second-best cosine"), QObject::tr("pixel blocks"));
        }

        {
            auto& info =
                addPlot(canvas, QObject::tr("Empty clusters per level"), QString(), QObject::tr("empty clusters"));
            auto* plot = info.plot;
            QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
            QVector<double> keys, values;
            double top = 1;
            auto* bars = new QCPBars(plot->xAxis, plot->yAxis);
            bars->setProperty("fecSecondColour", true);
            bars->setWidth(0.6);
            for (int l = 1; l <= levels; ++l) {
                const auto& lv = pyramid.levels[l - 1];
                keys.push_back(l);
                values.push_back(lv.emptyCount());
                top = std::max(top, static_cast<double>(lv.emptyCount()));
                ticker->addTick(l, QObject::tr("Level %1\n%2x%3").arg(l).arg(lv.gridH).arg(lv.gridW));
            }
            bars->setData(keys, values, true);
            for (int l = 1; l <= levels; ++l) {
                const auto& lv = pyramid.levels[l - 1];
                auto* label = new QCPItemText(plot);
                label->position->setCoords(l, lv.emptyCount() + top * 0.03);
                label->setPositionAlignment(Qt::AlignHCenter | Qt::AlignBottom);
                label->setText(QObject::tr("%1 of %2").arg(lv.emptyCount()).arg(lv.gridH * lv.gridW));
                label->setClipToAxisRect(false);
            }
            plot->xAxis->setTicker(ticker);
            plot->xAxis->setSubTicks(false);
            plot->xAxis->grid()->setVisible(false);
            plot->xAxis->setRange(0.4, levels + 0.6);
            plot->yAxis->setRange(0, top * 1.22);
            info.hasData = levels > 0;
            finishPlot(info);
        }

        {
            auto& info = addPlot(canvas, QObject::tr("Mean head agreement per block"), QString(),
                                 QObject::tr("mean adjusted Rand index"));
            auto* plot = info.plot;
            QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
            QVector<double> keys, values;
            double lo = 0;
            int key = 0;
            for (const auto& part : result->partitions) {
                ++key;
                ticker->addTick(key, QStringLiteral("s%1.b%2").arg(part.stage).arg(part.block));
                if (part.heads < 2 || !part.agreement.defined())
                    continue;
                const auto a = part.agreement.to(at::kDouble).contiguous();
                const double* p = a.data_ptr<double>();
                double sum = 0;
                for (int i = 0; i < part.heads; ++i)
                    for (int j = 0; j < part.heads; ++j)
                        if (i != j)
                            sum += p[i * part.heads + j];
                const double mean = sum / (part.heads * (part.heads - 1));
                keys.push_back(key);
                values.push_back(mean);
                lo = std::min(lo, mean);
            }
            if (!keys.isEmpty()) {
                auto* bars = new QCPBars(plot->xAxis, plot->yAxis);
                bars->setWidth(0.6);
                bars->setData(keys, values, true);
                info.hasData = true;
            } else {
                auto* note = new QCPItemText(plot);
                note->position->setType(QCPItemPosition::ptAxisRectRatio);
                note->position->setCoords(0.5, 0.5);
                note->setText(result->partitions.empty() ? QObject::tr("No encoding-block trace in this result")
                                                         : QObject::tr("Every block has a single head"));
            }
            plot->xAxis->setTicker(ticker);
            plot->xAxis->setSubTicks(false);
            plot->xAxis->grid()->setVisible(false);
            if (key > 8)
                plot->xAxis->setTickLabelRotation(-45);
            plot->xAxis->setRange(0.4, std::max(1, key) + 0.6);
            plot->yAxis->setRange(lo < 0 ? lo - 0.05 : 0, 1.05);
            finishPlot(info);
        }

        for (size_t i = 0; i < plots.size(); ++i) {
            grid->addWidget(plots[i].plot, static_cast<int>(i) / kColumns, static_cast<int>(i) % kColumns);
            stylePlot(plots[i], self->palette());
            plots[i].plot->replot();
        }
    }
};

StatisticsView::StatisticsView(QWidget* parent) : QWidget(parent), d(std::make_unique<Private>())
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    d->placeholder = new QLabel(tr("Run a model on an image to see the statistics of its clusters."), this);
    d->placeholder->setAlignment(Qt::AlignCenter);
    d->placeholder->setWordWrap(true);
    layout->addWidget(d->placeholder);
    d->scroll = new QScrollArea(this);
    d->scroll->setWidgetResizable(true);
    d->scroll->setFrameShape(QFrame::NoFrame);
    d->canvas = new QWidget;
    d->grid = new QGridLayout(d->canvas);
    d->grid->setSpacing(8);
    d->scroll->setWidget(d->canvas);
    layout->addWidget(d->scroll);
    d->canvas->setVisible(false);
}

StatisticsView::~StatisticsView() = default;

void StatisticsView::setResult(ExplainResultPtr result)
{
    if (result == d->result)
        return;
    d->result = std::move(result);
    d->rebuild(this);
}

int StatisticsView::plotCount() const
{
    return static_cast<int>(
        std::count_if(d->plots.begin(), d->plots.end(), [](const PlotInfo& p) { return p.hasData; }));
}

Histogram StatisticsView::sizeHistogram(int level) const
{
    if (level < 1 || level > static_cast<int>(d->sizeHists.size()))
        return {};
    return d->sizeHists[level - 1];
}

Histogram StatisticsView::marginHistogram(int level) const
{
    if (level < 1 || level > static_cast<int>(d->marginHists.size()))
        return {};
    return d->marginHists[level - 1];
}

QStringList StatisticsView::plotTitles() const
{
    QStringList titles;
    for (const auto& p : d->plots)
        titles << (p.title ? p.title->text() : QString());
    return titles;
}

QSize StatisticsView::exportPixelSize() const
{
    const int n = static_cast<int>(d->plots.size());
    if (n == 0)
        return {};
    const int rows = (n + kColumns - 1) / kColumns;
    return QSize(kColumns * kExportCellW, rows * kExportCellH) * kExportScale;
}

void StatisticsView::exportTo(const QString& path)
{
    const QString name = QFileInfo(path).fileName();
    if (d->plots.empty())
        throw std::runtime_error(path.toStdString() + ": there are no statistics to save (no result yet)");
    const QString ext = QFileInfo(path).suffix().toLower();
    if (ext != QLatin1String("png") && ext != QLatin1String("pdf"))
        throw std::runtime_error(path.toStdString() + ": statistics are saved as .png or .pdf");

    // Exports use a light, print-friendly look whatever the screen palette is.
    QPalette print;
    print.setColor(QPalette::Window, Qt::white);
    print.setColor(QPalette::Base, Qt::white);
    print.setColor(QPalette::WindowText, QColor(25, 25, 25));
    const QSize logical = exportPixelSize() / kExportScale;
    const auto paintAll = [&](QCPPainter& painter) {
        for (size_t i = 0; i < d->plots.size(); ++i) {
            stylePlot(d->plots[i], print);
            painter.save();
            painter.translate((static_cast<int>(i) % kColumns) * kExportCellW,
                              (static_cast<int>(i) / kColumns) * kExportCellH);
            d->plots[i].plot->toPainter(&painter, kExportCellW, kExportCellH);
            painter.restore();
        }
    };

    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        throw std::runtime_error("cannot write " + path.toStdString() + ": " + file.errorString().toStdString());
    try {
        if (ext == QLatin1String("png")) {
            // Painted at 96 dpi (fonts keep their layout) and scaled; the file then says 192 dpi.
            QImage image(exportPixelSize(), QImage::Format_RGB32);
            image.fill(Qt::white);
            image.setDotsPerMeterX(qRound(96 / 0.0254));
            image.setDotsPerMeterY(qRound(96 / 0.0254));
            {
                QCPPainter painter(&image);
                painter.setRenderHint(QPainter::Antialiasing);
                painter.scale(kExportScale, kExportScale);
                paintAll(painter);
            }
            image.setDotsPerMeterX(qRound(96 * kExportScale / 0.0254));
            image.setDotsPerMeterY(qRound(96 * kExportScale / 0.0254));
            if (!image.save(&file, "PNG"))
                throw std::runtime_error("cannot encode " + path.toStdString() + " as PNG");
        } else {
            QPdfWriter writer(&file);
            // 96 device pixels per inch, as on screen: fonts and plots keep their proportions.
            writer.setResolution(96);
            writer.setPageSize(
                QPageSize(QSizeF(logical) * 72.0 / 96.0, QPageSize::Point, QString(), QPageSize::ExactMatch));
            writer.setPageMargins(QMarginsF(0, 0, 0, 0));
            writer.setTitle(
                tr("FEC statistics · %1").arg(d->result ? QFileInfo(d->result->imagePath).fileName() : name));
            writer.setCreator(QStringLiteral("FEC Explorer"));
            QCPPainter painter(&writer);
            painter.setMode(QCPPainter::pmVectorized);
            painter.setMode(QCPPainter::pmNoCaching);
            paintAll(painter);
            painter.end();
        }
    } catch (...) {
        for (auto& p : d->plots) {
            stylePlot(p, palette());
            p.plot->replot();
        }
        file.cancelWriting();
        throw;
    }
    for (auto& p : d->plots) {
        stylePlot(p, palette());
        p.plot->replot();
    }
    if (!file.commit())
        throw std::runtime_error("cannot write " + path.toStdString() + ": " + file.errorString().toStdString());
}

void StatisticsView::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange || event->type() == QEvent::StyleChange) {
        for (auto& p : d->plots) {
            stylePlot(p, palette());
            p.plot->replot();
        }
    }
}

}  // namespace fec::ui
