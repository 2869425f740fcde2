#include "fec/ui/hierarchy_model.h"

#include <QColor>
#include <QPainter>
#include <QPixmap>

#include "fec/imaging/render.h"

namespace fec::ui {

HierarchyModel::HierarchyModel(QObject* parent) : QAbstractItemModel(parent) {}

HierarchyModel::~HierarchyModel() = default;

const SegmentPyramid* HierarchyModel::pyramid() const
{
    return m_result ? &m_result->pyramid : nullptr;
}

void HierarchyModel::setResult(ExplainResultPtr result)
{
    beginResetModel();
    m_result = std::move(result);
    m_roots.clear();
    m_row.clear();
    m_colourIndex.clear();
    if (const auto* p = pyramid()) {
        const int n = static_cast<int>(p->nodes.size());
        m_row.assign(n, 0);
        m_colourIndex.assign(n, 0);
        for (int level = p->levelCount(); level >= 1; --level) {
            const auto& ids = p->levelNodes[level - 1];
            for (size_t i = 0; i < ids.size(); ++i) {
                const int id = ids[i];
                m_colourIndex[id] = static_cast<int>(i);
                if (p->nodes[id].parent < 0) {
                    m_row[id] = static_cast<int>(m_roots.size());
                    m_roots.push_back(id);
                }
            }
        }
        for (const auto& node : p->nodes)
            for (size_t i = 0; i < node.children.size(); ++i)
                m_row[node.children[i]] = static_cast<int>(i);
    }
    endResetModel();
}

QModelIndex HierarchyModel::indexOfNode(int node, int column) const
{
    const auto* p = pyramid();
    if (!p || node < 0 || node >= static_cast<int>(p->nodes.size()) || column < 0 || column >= ColumnCount)
        return {};
    return createIndex(m_row[node], column, quintptr(node));
}

int HierarchyModel::nodeOf(const QModelIndex& index) const
{
    return index.isValid() ? static_cast<int>(index.internalId()) : -1;
}

QString HierarchyModel::nodeLabel(int node) const
{
    const auto* p = pyramid();
    if (!p || node < 0 || node >= static_cast<int>(p->nodes.size()))
        return {};
    const auto& n = p->nodes[node];
    return QStringLiteral("L%1 #%2").arg(n.level).arg(n.cluster);
}

QModelIndex HierarchyModel::index(int row, int column, const QModelIndex& parent) const
{
    const auto* p = pyramid();
    if (!p || row < 0 || column < 0 || column >= ColumnCount)
        return {};
    if (!parent.isValid()) {
        if (row >= static_cast<int>(m_roots.size()))
            return {};
        return createIndex(row, column, quintptr(m_roots[row]));
    }
    if (parent.model() != this)
        return {};
    const auto& children = p->nodes[nodeOf(parent)].children;
    if (row >= static_cast<int>(children.size()))
        return {};
    return createIndex(row, column, quintptr(children[row]));
}

QModelIndex HierarchyModel::parent(const QModelIndex& child) const
{
    const auto* p = pyramid();
    if (!p || !child.isValid())
        return {};
    const int parentNode = p->nodes[nodeOf(child)].parent;
    if (parentNode < 0)
        return {};
    return createIndex(m_row[parentNode], 0, quintptr(parentNode));
}

int HierarchyModel::rowCount(const QModelIndex& parent) const
{
    const auto* p = pyramid();
    if (!p)
        return 0;
    if (!parent.isValid())
        return static_cast<int>(m_roots.size());
    if (parent.column() != 0)
        return 0;
    return static_cast<int>(p->nodes[nodeOf(parent)].children.size());
}

int HierarchyModel::columnCount(const QModelIndex&) const
{
    return ColumnCount;
}

QIcon HierarchyModel::swatch(int colourIndex) const
{
    auto it = m_swatches.find(colourIndex);
    if (it != m_swatches.end())
        return *it;
    const auto c = imaging::paletteColour(colourIndex);
    QPixmap pm(14, 14);
    pm.fill(Qt::transparent);
    QPainter painter(&pm);
    painter.setPen(QColor(0, 0, 0, 160));
    painter.setBrush(QColor(c[0], c[1], c[2]));
    painter.drawRect(1, 1, 11, 11);
    painter.end();
    return *m_swatches.insert(colourIndex, QIcon(pm));
}

QVariant HierarchyModel::data(const QModelIndex& index, int role) const
{
    const auto* p = pyramid();
    if (!p || !index.isValid() || index.model() != this)
        return {};
    const int id = nodeOf(index);
    const auto& n = p->nodes[id];
    if (role == NodeRole)
        return id;
    if (role == LevelRole)
        return n.level;
    switch (index.column()) {
    case SegmentColumn:
        if (role == Qt::DisplayRole)
            return nodeLabel(id);
        if (role == Qt::DecorationRole)
            return swatch(m_colourIndex[id]);
        if (role == Qt::ToolTipRole)
            return tr("Level %1, cluster %2 at grid row %3, column %4\n%5 children, centroid (%6, %7)")
                .arg(n.level)
                .arg(n.cluster)
                .arg(n.gridRow)
                .arg(n.gridCol)
                .arg(n.children.size())
                .arg(n.cx, 0, 'f', 1)
                .arg(n.cy, 0, 'f', 1);
        if (role == SortRole)
            return n.level * 100000 + n.cluster;
        break;
    case BlocksColumn:
        if (role == Qt::DisplayRole || role == SortRole)
            return qlonglong(n.blocks);
        if (role == Qt::TextAlignmentRole)
            return int(Qt::AlignRight | Qt::AlignVCenter);
        break;
    case PixelsColumn:
        if (role == Qt::DisplayRole || role == SortRole)
            return qlonglong(n.pixels);
        if (role == Qt::TextAlignmentRole)
            return int(Qt::AlignRight | Qt::AlignVCenter);
        break;
    case BoxColumn:
        if (role == Qt::DisplayRole)
            return QStringLiteral("%1,%2 – %3,%4").arg(n.x0).arg(n.y0).arg(n.x1).arg(n.y1);
        if (role == Qt::ToolTipRole)
            return tr("x %1 to %2, y %3 to %4 (model-input pixels, end exclusive)")
                .arg(n.x0)
                .arg(n.x1)
                .arg(n.y0)
                .arg(n.y1);
        if (role == SortRole)
            return qlonglong(n.x1 - n.x0) * (n.y1 - n.y0);
        break;
    default:
        break;
    }
    return {};
}

QVariant HierarchyModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal)
        return {};
    if (role == Qt::DisplayRole) {
        switch (section) {
        case SegmentColumn:
            return tr("Segment");
        case BlocksColumn:
            return tr("Blocks");
        case PixelsColumn:
            return tr("Pixels");
        case BoxColumn:
            return tr("Bounding box");
        default:
            return {};
        }
    }
    if (role == Qt::ToolTipRole && section == BlocksColumn)
        return tr("4×4 pixel blocks of the model input covered by the segment");
    return {};
}

Qt::ItemFlags HierarchyModel::flags(const QModelIndex& index) const
{
    if (!index.isValid())
        return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
    if (rowCount(index) == 0 || index.column() != 0)
        f |= Qt::ItemNeverHasChildren;
    return f;
}

}  // namespace fec::ui
