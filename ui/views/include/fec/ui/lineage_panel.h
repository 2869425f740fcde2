#pragma once

// What the pixel under the mouse went through: its block, and at every level the cluster it
// joined (node, grid position, size) with the assignment's similarity and margin (confidence).
// With no pixel hovered it describes the selected segment and its ancestors.

#include <vector>

#include <QPointer>
#include <QWidget>

#include "fec/ui/explain_result.h"

class QLabel;
class QTreeWidget;

namespace fec::ui {

class SelectionModel;

class LineagePanel : public QWidget {
    Q_OBJECT
public:
    explicit LineagePanel(SelectionModel* selection, QWidget* parent = nullptr);
    ~LineagePanel() override;

    void setResult(ExplainResultPtr result);
    QTreeWidget* table() const { return m_table; }
    /// One line for the status bar: "(112, 80) L1 #34 → L2 #12 → L3 #3 · margin 0.12".
    QString summary() const { return m_summary; }

Q_SIGNALS:
    void summaryChanged(const QString& summary);

private:
    void refresh();
    void showPixel(QPoint pixel);
    void showNode(int node);
    double percentile(int level, float margin) const;

    QPointer<SelectionModel> m_selection;
    ExplainResultPtr m_result;
    QLabel* m_header = nullptr;
    QTreeWidget* m_table = nullptr;
    QString m_summary;
    std::vector<std::vector<float>> m_sortedMargins;  // per level, ascending
};

}  // namespace fec::ui
