#include "fec/ui/training_charts.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <QEvent>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QPdfWriter>
#include <QSaveFile>

#include "fec/ui/charts.h"
#include "fec/ui/qcustomplot_wrapper.h"
#include "fec/ui/training_metrics.h"

namespace fec::ui {

namespace {

constexpr int kExportCellW = 480, kExportCellH = 340;  // logical pixels per chart in exports
constexpr int kExportScale = 2;                        // PNG pixels per logical pixel

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
const QColor kBlue(0, 114, 178), kVermillion(213, 94, 0), kGreen(0, 158, 115), kOrange(230, 159, 0);

struct Chart {
    QCustomPlot* plot = nullptr;
    QCPTextElement* title = nullptr;
    bool follow = true;  // the ranges track the data until the user pans or zooms
    double keyMin = 0, keyMax = 1;
    double valueMin = std::numeric_limits<double>::infinity();
    double valueMax = -std::numeric_limits<double>::infinity();
    bool percent = false;
};

void stylePlot(Chart& c, const QPalette& palette)
{
    applyChartPalette({c.plot, c.title}, palette);
}

}  // namespace

struct TrainingCharts::Private {
    Chart loss, accuracy, lr;
    QCPGraph* trainLoss = nullptr;
    QCPGraph* valLoss = nullptr;
    QCPGraph* emaLoss = nullptr;
    QCPGraph* top1 = nullptr;
    QCPGraph* top5 = nullptr;
    QCPGraph* emaTop1 = nullptr;
    QCPGraph* lrGraph = nullptr;
    qint64 totalSteps = 0;
    int totalEpochs = 0;

    void setUp(Chart& c, QWidget* parent, const QString& title, const QString& xLabel, const QString& yLabel)
    {
        const auto titled =
            createTitledPlot(parent, title, xLabel, yLabel, QSize(220, 180),
                             QObject::tr("Drag to pan, wheel to zoom, double-click to follow the run again"));
        c.plot = titled.plot;
        c.title = titled.title;
        QFont legendFont = c.plot->font();
        legendFont.setPointSizeF(legendFont.pointSizeF() * 0.85);
        c.plot->legend->setFont(legendFont);
        c.plot->legend->setVisible(true);
        c.plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
        Chart* chart = &c;
        QObject::connect(c.plot, &QCustomPlot::mouseWheel, c.plot, [chart](QWheelEvent*) { chart->follow = false; });
        QObject::connect(c.plot, &QCustomPlot::mouseMove, c.plot, [chart](QMouseEvent* e) {
            if (e->buttons() != Qt::NoButton)
                chart->follow = false;
        });
        QObject::connect(c.plot, &QCustomPlot::mouseDoubleClick, c.plot, [this, chart](QMouseEvent*) {
            chart->follow = true;
            applyRange(*chart);
            chart->plot->replot();
        });
    }

    QCPGraph* addGraph(Chart& c, const QString& name, const QColor& colour, bool points, bool inLegend = true,
                       Qt::PenStyle penStyle = Qt::SolidLine)
    {
        auto* g = c.plot->addGraph();
        g->setName(name);
        g->setPen(QPen(colour, 1.6, penStyle));
        if (points)
            g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, colour, colour, 5));
        if (!inLegend)
            g->removeFromLegend();
        return g;
    }

    void applyRange(Chart& c)
    {
        if (!c.follow)
            return;
        // A little room past the last point (epochs are whole numbers: half an epoch).
        const double keyMax = std::max(c.keyMax, c.keyMin + 1);
        c.plot->xAxis->setRange(c.keyMin, keyMax + (c.percent ? 0.5 : (keyMax - c.keyMin) * 0.03));
        if (c.valueMin > c.valueMax) {
            c.plot->yAxis->setRange(0, c.percent ? 100 : 1);
            return;
        }
        const double span = std::max(c.valueMax - c.valueMin, std::max(std::abs(c.valueMax), 1e-12) * 0.05);
        double lo = c.valueMin - span * 0.08, hi = c.valueMax + span * 0.08;
        if (c.percent) {
            lo = std::max(0.0, lo);
            hi = std::min(100.0, hi);
        } else if (c.valueMin >= 0) {
            lo = std::max(0.0, lo);
        }
        c.plot->yAxis->setRange(lo, hi);
    }

    void add(Chart& c, QCPGraph* g, double key, double value)
    {
        if (!std::isfinite(key) || !std::isfinite(value))
            return;
        if (g->dataCount() == 0 && !c.plot->legend->hasItemWithPlottable(g) && g->property("fecOptional").toBool())
            g->addToLegend();
        g->addData(key, value);
        c.valueMin = std::min(c.valueMin, value);
        c.valueMax = std::max(c.valueMax, value);
        c.keyMax = std::max(c.keyMax, key);
    }

    void extents()
    {
        loss.keyMax = std::max<double>(loss.keyMax, static_cast<double>(totalSteps));
        lr.keyMax = std::max<double>(lr.keyMax, static_cast<double>(totalSteps));
        accuracy.keyMax = std::max<double>(accuracy.keyMax, totalEpochs);
    }

    void append(const TrainingMetric& m)
    {
        const double step = static_cast<double>(m.step);
        if (m.totalSteps > totalSteps)
            totalSteps = m.totalSteps;
        if (m.isTrain()) {
            add(loss, trainLoss, step, m.loss);
            add(lr, lrGraph, step, m.lr);
        } else {
            add(loss, valLoss, step, m.loss);
            if (m.emaLoss)
                add(loss, emaLoss, step, *m.emaLoss);
            const double epoch = m.epoch + 1;
            if (m.top1)
                add(accuracy, top1, epoch, *m.top1);
            if (m.top5)
                add(accuracy, top5, epoch, *m.top5);
            if (m.emaTop1)
                add(accuracy, emaTop1, epoch, *m.emaTop1);
        }
        extents();
    }

    void reset()
    {
        for (Chart* c : {&loss, &accuracy, &lr}) {
            for (int i = 0; i < c->plot->graphCount(); ++i) {
                auto* g = c->plot->graph(i);
                g->data()->clear();
                if (g->property("fecOptional").toBool())
                    g->removeFromLegend();
            }
            c->valueMin = std::numeric_limits<double>::infinity();
            c->valueMax = -std::numeric_limits<double>::infinity();
            c->keyMax = 1;
            c->follow = true;
        }
    }

    void refresh()
    {
        for (Chart* c : {&loss, &accuracy, &lr}) {
            applyRange(*c);
            c->plot->replot(QCustomPlot::rpQueuedReplot);
        }
    }
};

TrainingCharts::TrainingCharts(QWidget* parent) : QWidget(parent), d(std::make_unique<Private>())
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(4);
    d->setUp(d->loss, this, tr("Loss"), tr("step"), tr("loss"));
    d->setUp(d->accuracy, this, tr("Validation accuracy"), tr("epoch"), tr("%"));
    d->setUp(d->lr, this, tr("Learning rate"), tr("step"), tr("lr"));
    d->accuracy.percent = true;
    d->accuracy.keyMin = 0.5;
    d->lr.plot->yAxis->setNumberFormat(QStringLiteral("gb"));
    d->lr.plot->yAxis->setNumberPrecision(2);
    d->lr.plot->legend->setVisible(false);
    auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
    ticker->setTickStep(1);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    d->accuracy.plot->xAxis->setTicker(ticker);

    d->trainLoss = d->addGraph(d->loss, tr("train"), kBlue, false);
    d->valLoss = d->addGraph(d->loss, tr("validation"), kVermillion, true);
    d->emaLoss = d->addGraph(d->loss, tr("validation (EMA)"), kGreen, true, false, Qt::DashLine);
    d->emaLoss->setProperty("fecOptional", true);
    d->top1 = d->addGraph(d->accuracy, tr("top-1"), kBlue, true);
    d->top5 = d->addGraph(d->accuracy, tr("top-5"), kOrange, true);
    d->emaTop1 = d->addGraph(d->accuracy, tr("top-1 (EMA)"), kGreen, true, false, Qt::DashLine);
    d->emaTop1->setProperty("fecOptional", true);
    d->lrGraph = d->addGraph(d->lr, tr("lr"), kBlue, false);

    for (Chart* c : {&d->loss, &d->accuracy, &d->lr}) {
        stylePlot(*c, palette());
        layout->addWidget(c->plot, 1);
    }
    d->refresh();
}

TrainingCharts::~TrainingCharts() = default;

void TrainingCharts::setHistory(const MetricHistory* history, qint64 totalSteps, int totalEpochs)
{
    d->reset();
    d->totalSteps = totalSteps;
    d->totalEpochs = totalEpochs;
    d->extents();
    if (history) {
        for (const auto& m : history->train())
            d->append(m);
        for (const auto& m : history->val())
            d->append(m);
    }
    d->refresh();
    Q_EMIT updated();
}

void TrainingCharts::setTotals(qint64 totalSteps, int totalEpochs)
{
    if (totalSteps == d->totalSteps && totalEpochs == d->totalEpochs)
        return;
    d->totalSteps = std::max(d->totalSteps, totalSteps);
    d->totalEpochs = std::max(d->totalEpochs, totalEpochs);
    d->extents();
    d->refresh();
}

void TrainingCharts::appendMetric(const TrainingMetric& metric)
{
    d->append(metric);
    // Queued replots: a burst of lines costs one repaint per chart.
    d->refresh();
    Q_EMIT updated();
}

void TrainingCharts::clear()
{
    setHistory(nullptr);
}

int TrainingCharts::trainLossPoints() const
{
    return d->trainLoss->dataCount();
}

int TrainingCharts::valLossPoints() const
{
    return d->valLoss->dataCount();
}

int TrainingCharts::accuracyPoints() const
{
    return d->top1->dataCount();
}

int TrainingCharts::learningRatePoints() const
{
    return d->lrGraph->dataCount();
}

QCustomPlot* TrainingCharts::lossPlot() const
{
    return d->loss.plot;
}

QCustomPlot* TrainingCharts::accuracyPlot() const
{
    return d->accuracy.plot;
}

QCustomPlot* TrainingCharts::learningRatePlot() const
{
    return d->lr.plot;
}

bool TrainingCharts::exportTo(const QString& path, QString* error)
{
    const auto fail = [error](const QString& why) {
        if (error)
            *error = why;
        return false;
    };
    const QString ext = QFileInfo(path).suffix().toLower();
    if (ext != QLatin1String("png") && ext != QLatin1String("pdf"))
        return fail(tr("%1: choose a .png or .pdf file").arg(path));
    Chart* charts[] = {&d->loss, &d->accuracy, &d->lr};
    // Exports use a light, print-friendly look whatever the screen palette is.
    QPalette print;
    print.setColor(QPalette::Window, Qt::white);
    print.setColor(QPalette::Base, Qt::white);
    print.setColor(QPalette::WindowText, QColor(25, 25, 25));
    const QSize logical(kExportCellW * 3, kExportCellH);
    const auto paintAll = [&](QCPPainter& painter) {
        for (int i = 0; i < 3; ++i) {
            stylePlot(*charts[i], print);
            painter.save();
            painter.translate(i * kExportCellW, 0);
            charts[i]->plot->toPainter(&painter, kExportCellW, kExportCellH);
            painter.restore();
        }
    };
    const auto restore = [&] {
        for (Chart* c : charts) {
            stylePlot(*c, palette());
            c->plot->replot(QCustomPlot::rpQueuedReplot);
        }
    };
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return fail(tr("cannot write %1: %2").arg(path, file.errorString()));
    if (ext == QLatin1String("png")) {
        QImage image(logical * kExportScale, QImage::Format_RGB32);
        image.fill(Qt::white);
        {
            QCPPainter painter(&image);
            painter.setRenderHint(QPainter::Antialiasing);
            painter.scale(kExportScale, kExportScale);
            paintAll(painter);
        }
        image.setDotsPerMeterX(qRound(96 * kExportScale / 0.0254));
        image.setDotsPerMeterY(qRound(96 * kExportScale / 0.0254));
        if (!image.save(&file, "PNG")) {
            restore();
            file.cancelWriting();
            return fail(tr("cannot encode %1 as PNG").arg(path));
        }
    } else {
        QPdfWriter writer(&file);
        writer.setResolution(96);
        writer.setPageSize(
            QPageSize(QSizeF(logical) * 72.0 / 96.0, QPageSize::Point, QString(), QPageSize::ExactMatch));
        writer.setPageMargins(QMarginsF(0, 0, 0, 0));
        writer.setTitle(tr("FEC training curves"));
        writer.setCreator(QStringLiteral("FEC Explorer"));
        QCPPainter painter(&writer);
        painter.setMode(QCPPainter::pmVectorized);
        painter.setMode(QCPPainter::pmNoCaching);
        paintAll(painter);
        painter.end();
    }
    restore();
    if (!file.commit())
        return fail(tr("cannot write %1: %2").arg(path, file.errorString()));
    return true;
}

void TrainingCharts::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange) {
        for (Chart* c : {&d->loss, &d->accuracy, &d->lr}) {
            stylePlot(*c, palette());
            c->plot->replot(QCustomPlot::rpQueuedReplot);
        }
    }
}

}  // namespace fec::ui
