#pragma once

// Live charts of a training run (QCustomPlot): train and validation loss against the step,
// validation top-1/top-5 per epoch, the learning rate against the step. Points are appended as
// metric lines arrive (no redraw of the whole history); drag pans, the wheel zooms, a double
// click returns to following the run. Exported as PNG or PDF.

#include <memory>

#include <QWidget>

class QCustomPlot;

namespace fec::ui {

class MetricHistory;
struct TrainingMetric;

class TrainingCharts : public QWidget {
    Q_OBJECT
public:
    explicit TrainingCharts(QWidget* parent = nullptr);
    ~TrainingCharts() override;

    /// Redraws from a whole history (nullptr: empty charts). `totalSteps`/`totalEpochs` (0 when
    /// unknown) set the horizontal extent while following the run.
    void setHistory(const MetricHistory* history, qint64 totalSteps = 0, int totalEpochs = 0);
    void setTotals(qint64 totalSteps, int totalEpochs);
    /// Adds one metric line's points.
    void appendMetric(const TrainingMetric& metric);
    void clear();

    int trainLossPoints() const;
    int valLossPoints() const;
    /// Validation top-1 points (one per epoch).
    int accuracyPoints() const;
    int learningRatePoints() const;

    QCustomPlot* lossPlot() const;
    QCustomPlot* accuracyPlot() const;
    QCustomPlot* learningRatePlot() const;

    /// The three charts side by side as PNG or PDF (by the suffix), written atomically.
    /// False with a readable `error` when it cannot.
    bool exportTo(const QString& path, QString* error = nullptr);

Q_SIGNALS:
    /// Points were added or the charts redrawn.
    void updated();

protected:
    void changeEvent(QEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
