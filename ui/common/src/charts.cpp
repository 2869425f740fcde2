#include "fec/ui/charts.h"

#include <QPalette>
#include <QWidget>

#include "fec/ui/qcustomplot_wrapper.h"

namespace fec::ui {

TitledPlot createTitledPlot(QWidget* parent, const QString& title, const QString& xLabel, const QString& yLabel,
                            const QSize& minimumSize, const QString& toolTip)
{
    TitledPlot chart;
    chart.plot = new QCustomPlot(parent);
    chart.plot->setMinimumSize(minimumSize);
    chart.plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    chart.plot->setToolTip(toolTip);
    chart.plot->plotLayout()->insertRow(0);
    QFont titleFont = chart.plot->font();
    titleFont.setBold(true);
    chart.title = new QCPTextElement(chart.plot, title, titleFont);
    chart.plot->plotLayout()->addElement(0, 0, chart.title);
    chart.plot->xAxis->setLabel(xLabel);
    chart.plot->yAxis->setLabel(yLabel);
    return chart;
}

void applyChartPalette(const TitledPlot& chart, const QPalette& palette)
{
    auto* plot = chart.plot;
    const QColor text = palette.color(QPalette::WindowText);
    const QColor base = palette.color(QPalette::Base);
    QColor grid = text;
    grid.setAlphaF(0.18);
    plot->setBackground(base);
    plot->axisRect()->setBackground(base);
    for (auto* axis : {plot->xAxis, plot->yAxis, plot->xAxis2, plot->yAxis2}) {
        axis->setBasePen(QPen(text, 1));
        axis->setTickPen(QPen(text, 1));
        axis->setSubTickPen(QPen(text, 1));
        axis->setTickLabelColor(text);
        axis->setLabelColor(text);
        axis->grid()->setPen(QPen(grid, 1, Qt::DotLine));
        axis->grid()->setZeroLinePen(Qt::NoPen);
    }
    if (chart.title)
        chart.title->setTextColor(text);
    plot->legend->setBrush(base);
    plot->legend->setTextColor(text);
    plot->legend->setBorderPen(QPen(grid, 1));
}

}  // namespace fec::ui
