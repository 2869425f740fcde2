#pragma once

// Encoding clusters: a grid with every head of a chosen ClusterBlock drawn over the image, and
// the agreement (adjusted Rand index) between heads.

#include <memory>

#include <QImage>
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

Q_SIGNALS:
    void blockChanged(int index);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

} // namespace fec::ui
