#pragma once

// Encoding clusters: a grid with every head of a chosen ClusterBlock drawn over the image, and
// the agreement (adjusted Rand index) between heads.

#include <memory>

#include <QImage>
#include <QRect>
#include <QString>
#include <QWidget>

#include "fec/ui/explain_result.h"

namespace fec::ui {

class HeadsView : public QWidget {
    Q_OBJECT
public:
    explicit HeadsView(QWidget* parent = nullptr);
    ~HeadsView() override;

    void setResult(ExplainResultPtr result);
    /// Index into ExplainResult::partitions (stage-major block order).
    void setBlock(int index);
    int block() const;
    /// Number of head tiles shown (for tests).
    int tileCount() const;
    /// The picture and title of a head's tile (for tests and screenshots); null/empty if none.
    QImage tileImage(int head) const;
    QString tileTitle(int head) const;
    /// Mean adjusted Rand index of a head against the block's other heads (NaN with one head).
    double meanAgreement(int head) const;

    /// The colour legend under the agreement matrix, in this view's coordinates.
    struct ColourLegend {
        QRect matrix;     ///< the agreement matrix the legend is drawn in
        QRect bar;        ///< the colour scale, 0 at its left end and 1 at its right end
        QRect low, high;  ///< the end labels "0" and "1", under the bar's ends
        QRect caption;    ///< the caption, on its own line under the end labels
        QString captionText;
    };
    /// Where the legend is drawn at the current size (empty rectangles while no block is shown).
    ColourLegend colourLegend() const;

Q_SIGNALS:
    void blockChanged(int index);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
