#pragma once

// The linked hierarchy tab: the tree of segments next to a pyramid view. Selecting a row selects
// the node everywhere (and shows its level); a selection made elsewhere selects and reveals the row.

#include <QPointer>
#include <QWidget>

#include "fec/ui/explain_result.h"

class QLabel;
class QSplitter;
class QTreeView;

namespace fec::ui {

class HierarchyModel;
class PyramidPanel;
class SelectionModel;

class HierarchyPanel : public QWidget {
    Q_OBJECT
public:
    explicit HierarchyPanel(SelectionModel* selection, QWidget* parent = nullptr);
    ~HierarchyPanel() override;

    void setResult(ExplainResultPtr result);
    QTreeView* tree() const { return m_tree; }
    HierarchyModel* model() const { return m_model; }
    PyramidPanel* pyramidPanel() const { return m_panel; }

private:
    void onSelectedNodeChanged(int node);

    QPointer<SelectionModel> m_selection;
    HierarchyModel* m_model = nullptr;
    QTreeView* m_tree = nullptr;
    PyramidPanel* m_panel = nullptr;
    QLabel* m_summary = nullptr;
    bool m_syncing = false;
};

}  // namespace fec::ui
