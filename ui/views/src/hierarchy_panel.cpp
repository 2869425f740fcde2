#include "fec/ui/hierarchy_panel.h"

#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QSplitter>
#include <QTreeView>
#include <QVBoxLayout>

#include "fec/ui/hierarchy_model.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"

namespace fec::ui {

HierarchyPanel::HierarchyPanel(SelectionModel* selection, QWidget* parent) : QWidget(parent), m_selection(selection)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* splitter = new QSplitter(Qt::Horizontal, this);
    layout->addWidget(splitter);

    auto* left = new QWidget(splitter);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->setContentsMargins(6, 6, 0, 6);
    m_summary = new QLabel(left);
    m_summary->setWordWrap(true);
    leftLayout->addWidget(m_summary);
    m_model = new HierarchyModel(this);
    m_tree = new QTreeView(left);
    m_tree->setModel(m_model);
    m_tree->setUniformRowHeights(true);
    m_tree->setAlternatingRowColors(true);
    m_tree->setSelectionMode(QAbstractItemView::SingleSelection);
    m_tree->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_tree->setAllColumnsShowFocus(true);
    m_tree->header()->setStretchLastSection(true);
    m_tree->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_tree->setToolTip(tr("Last-level segments and, under each, the segments of the level below it merged into it"));
    leftLayout->addWidget(m_tree);

    m_panel = new PyramidPanel(selection, splitter);
    splitter->addWidget(left);
    splitter->addWidget(m_panel);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({420, 900});

    connect(m_tree->selectionModel(), &QItemSelectionModel::currentChanged, this, [this](const QModelIndex& current) {
        if (m_syncing || !m_selection)
            return;
        const int node = m_model->nodeOf(current);
        m_syncing = true;
        if (node >= 0 && m_model->result())
            m_panel->setLevel(m_model->result()->pyramid.nodes[node].level);
        m_selection->setSelectedNode(node);
        m_syncing = false;
    });
    if (selection)
        connect(selection, &SelectionModel::selectedNodeChanged, this, &HierarchyPanel::onSelectedNodeChanged);
}

HierarchyPanel::~HierarchyPanel() = default;

void HierarchyPanel::setResult(ExplainResultPtr result)
{
    m_syncing = true;
    m_model->setResult(result);
    m_syncing = false;
    if (result) {
        const auto& p = result->pyramid;
        QStringList parts;
        for (const auto& lv : p.levels)
            parts << tr("L%1: %2").arg(lv.level).arg(lv.nonEmpty.size());
        m_summary->setText(
            tr("<b>%1 segments</b> in %2 levels (%3). Select a row to light the segment up in every view.")
                .arg(p.nodes.size())
                .arg(p.levelCount())
                .arg(parts.join(QStringLiteral(", "))));
    } else {
        m_summary->setText(tr("No result yet."));
    }
    m_panel->setResult(result);
    if (m_selection)
        onSelectedNodeChanged(m_selection->selectedNode());
}

void HierarchyPanel::onSelectedNodeChanged(int node)
{
    if (m_syncing)
        return;
    m_syncing = true;
    const QModelIndex index = m_model->indexOfNode(node);
    if (index.isValid()) {
        m_tree->selectionModel()->setCurrentIndex(index,
                                                  QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
        m_tree->scrollTo(index);
        if (m_model->result())
            m_panel->setLevel(m_model->result()->pyramid.nodes[node].level);
    } else {
        m_tree->selectionModel()->clearSelection();
    }
    m_syncing = false;
}

}  // namespace fec::ui
