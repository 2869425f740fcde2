#pragma once

// The linked segment hierarchy as a Qt item model: the last level's clusters at the top, each
// cluster's children (clusters of the level below) under it, down to level 1.

#include <vector>

#include <QAbstractItemModel>
#include <QHash>
#include <QIcon>

#include "fec/ui/explain_result.h"

namespace fec::ui {

class HierarchyModel : public QAbstractItemModel {
    Q_OBJECT
public:
    enum Column { SegmentColumn, BlocksColumn, PixelsColumn, BoxColumn, ColumnCount };
    enum Role {
        NodeRole = Qt::UserRole + 1,  ///< node id (int)
        LevelRole,                    ///< level 1..L (int)
        SortRole,                     ///< numeric value of the column
    };

    explicit HierarchyModel(QObject* parent = nullptr);
    ~HierarchyModel() override;

    /// Resets the model to a result's pyramid (nullptr empties it).
    void setResult(ExplainResultPtr result);
    ExplainResultPtr result() const { return m_result; }

    /// Index of a node (invalid for -1 or out of range).
    QModelIndex indexOfNode(int node, int column = SegmentColumn) const;
    /// Node of an index (-1 for the invalid index).
    int nodeOf(const QModelIndex& index) const;
    /// "L3 #12": level and raw cluster id.
    QString nodeLabel(int node) const;

    QModelIndex index(int row, int column, const QModelIndex& parent = QModelIndex()) const override;
    QModelIndex parent(const QModelIndex& child) const override;
    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;

private:
    const SegmentPyramid* pyramid() const;
    QIcon swatch(int colourIndex) const;

    ExplainResultPtr m_result;
    std::vector<int> m_roots;        // top-level node ids
    std::vector<int> m_row;          // row of each node under its parent (or among the roots)
    std::vector<int> m_colourIndex;  // compact label of each node at its level (overlay colour)
    mutable QHash<int, QIcon> m_swatches;
};

}  // namespace fec::ui
