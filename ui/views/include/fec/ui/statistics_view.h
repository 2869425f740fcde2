#pragma once

// Statistics of one result (QCustomPlot): per level, histograms of segment sizes and of
// assignment margins and the empty-cluster counts; per block, head agreement.

#include <memory>
#include <vector>

#include <QSize>
#include <QStringList>
#include <QWidget>

#include "fec/ui/explain_result.h"

namespace fec::ui {

/// Counts of a histogram: bin i covers [edges[i], edges[i + 1]) (the last bin includes its end).
struct Histogram {
    std::vector<double> edges;
    std::vector<int> counts;
    int total() const;
};

class StatisticsView : public QWidget {
    Q_OBJECT
public:
    explicit StatisticsView(QWidget* parent = nullptr);
    ~StatisticsView() override;

    void setResult(ExplainResultPtr result);
    /// Number of plots currently showing data (for tests).
    int plotCount() const;
    /// Saves all plots as one PNG or PDF (by extension); throws std::runtime_error naming the file.
    void exportTo(const QString& path);

    /// Segment sizes (model-input pixels) of the non-empty clusters of a level (1-based).
    Histogram sizeHistogram(int level) const;
    /// Assignment margins (one per pixel block) of a level (1-based).
    Histogram marginHistogram(int level) const;
    /// Titles of the plots in display order (for tests and accessibility).
    QStringList plotTitles() const;
    /// Pixel size of the PNG exportTo() writes for the current result.
    QSize exportPixelSize() const;

protected:
    void changeEvent(QEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
