#include "fec/ui/lineage_panel.h"

#include <algorithm>

#include <QHeaderView>
#include <QLabel>
#include <QPainter>
#include <QStyledItemDelegate>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "fec/analysis.h"
#include "fec/imaging/render.h"
#include "fec/ui/selection_model.h"

namespace fec::ui {

namespace {

enum Column { LevelCol, ClusterCol, GridCol, SizeCol, SimilarityCol, MarginCol, ColumnCount };
constexpr int kBarRole = Qt::UserRole + 1;  // 0..1: share of the bar to fill

// Draws the margin's percentile as a bar behind the text.
class BarDelegate : public QStyledItemDelegate {
public:
    using QStyledItemDelegate::QStyledItemDelegate;
    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override
    {
        const QVariant bar = index.data(kBarRole);
        if (bar.isValid()) {
            const double t = std::clamp(bar.toDouble(), 0.0, 1.0);
            QRectF r = QRectF(option.rect).adjusted(2, 3, -2, -3);
            r.setWidth(r.width() * t);
            QColor c = t < 0.25 ? QColor(213, 94, 0) : t < 0.6 ? QColor(230, 159, 0) : QColor(0, 158, 115);
            c.setAlpha(110);
            painter->fillRect(r, c);
        }
        QStyledItemDelegate::paint(painter, option, index);
    }
};

QIcon swatchIcon(int colourIndex)
{
    const auto c = imaging::paletteColour(colourIndex);
    QPixmap pm(12, 12);
    pm.fill(QColor(c[0], c[1], c[2]));
    return QIcon(pm);
}

}  // namespace

LineagePanel::LineagePanel(SelectionModel* selection, QWidget* parent) : QWidget(parent), m_selection(selection)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    m_header = new QLabel(this);
    m_header->setWordWrap(true);
    m_header->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_header);
    m_table = new QTreeWidget(this);
    m_table->setRootIsDecorated(false);
    m_table->setColumnCount(ColumnCount);
    m_table->setHeaderLabels({tr("Level"), tr("Cluster"), tr("Grid"), tr("Blocks"), tr("Similarity"), tr("Margin")});
    m_table->headerItem()->setToolTip(SimilarityCol, tr("Cosine similarity of the assignment into this cluster"));
    m_table->headerItem()->setToolTip(MarginCol, tr("Best minus runner-up similarity (confidence); the bar is its "
                                                    "percentile among this level's blocks"));
    m_table->setItemDelegateForColumn(MarginCol, new BarDelegate(m_table));
    m_table->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->setSelectionMode(QAbstractItemView::NoSelection);
    m_table->setFocusPolicy(Qt::NoFocus);
    layout->addWidget(m_table, 1);
    if (selection) {
        connect(selection, &SelectionModel::hoveredPixelChanged, this, &LineagePanel::refresh);
        connect(selection, &SelectionModel::selectedNodeChanged, this, &LineagePanel::refresh);
    }
    refresh();
}

LineagePanel::~LineagePanel() = default;

void LineagePanel::setResult(ExplainResultPtr result)
{
    m_result = std::move(result);
    m_sortedMargins.clear();
    if (m_result) {
        for (const auto& margins : m_result->pyramid.margin) {
            auto sorted = margins;
            std::sort(sorted.begin(), sorted.end());
            m_sortedMargins.push_back(std::move(sorted));
        }
    }
    refresh();
}

double LineagePanel::percentile(int level, float margin) const
{
    if (level < 1 || level > static_cast<int>(m_sortedMargins.size()) || m_sortedMargins[level - 1].empty())
        return 0;
    const auto& s = m_sortedMargins[level - 1];
    return double(std::upper_bound(s.begin(), s.end(), margin) - s.begin()) / double(s.size());
}

void LineagePanel::refresh()
{
    m_table->clear();
    if (!m_result) {
        m_header->setText(tr("Hover over an image to see each level's cluster of the pixel under the mouse."));
        m_summary.clear();
        Q_EMIT summaryChanged(m_summary);
        return;
    }
    const QPoint pixel = m_selection ? m_selection->hoveredPixel() : QPoint(-1, -1);
    if (pixel.x() >= 0)
        showPixel(pixel);
    else if (m_selection && m_selection->selectedNode() >= 0)
        showNode(m_selection->selectedNode());
    else {
        m_header->setText(tr("Hover over an image to trace the pixel under the mouse through every level; "
                             "click to select its segment."));
        m_summary.clear();
        Q_EMIT summaryChanged(m_summary);
    }
}

void LineagePanel::showPixel(QPoint pixel)
{
    const auto& p = m_result->pyramid;
    if (pixel.x() >= p.inputW || pixel.y() >= p.inputH)
        return;
    const Lineage lineage = lineageOf(p, pixel.x(), pixel.y());
    const auto& m = m_result->prepared.mapping;
    m_header->setText(tr("<b>Pixel (%1, %2)</b> of the %3×%3 input · block (%4, %5) · image (%6, %7)")
                          .arg(lineage.x)
                          .arg(lineage.y)
                          .arg(p.inputW)
                          .arg(lineage.blockRow)
                          .arg(lineage.blockCol)
                          .arg(static_cast<int>(m.offsetX + (lineage.x + 0.5) * m.scaleX))
                          .arg(static_cast<int>(m.offsetY + (lineage.y + 0.5) * m.scaleY)));
    QStringList chain;
    float minMargin = 1e9f;
    for (const auto& step : lineage.steps) {
        auto* item = new QTreeWidgetItem(m_table);
        item->setText(LevelCol, QString::number(step.level));
        if (step.node >= 0) {
            const auto& n = p.nodes[step.node];
            const auto& lv = p.levels[step.level - 1];
            item->setIcon(ClusterCol, swatchIcon(lv.compact[step.cluster]));
            item->setText(ClusterCol, QStringLiteral("#%1").arg(step.cluster));
            item->setToolTip(
                ClusterCol,
                tr("Cluster %1 of level %2 (hierarchy node %3)").arg(step.cluster).arg(step.level).arg(step.node));
            item->setText(GridCol, QStringLiteral("%1,%2").arg(n.gridRow).arg(n.gridCol));
            item->setText(SizeCol, QString::number(n.blocks));
            chain << QStringLiteral("L%1 #%2").arg(step.level).arg(step.cluster);
        } else {
            item->setText(ClusterCol, QStringLiteral("#%1").arg(step.cluster));
        }
        item->setText(SimilarityCol, QString::number(step.similarity, 'f', 3));
        const double pct = percentile(step.level, step.margin);
        item->setText(MarginCol, QStringLiteral("%1 · p%2").arg(step.margin, 0, 'f', 3).arg(std::lround(pct * 100)));
        item->setData(MarginCol, kBarRole, pct);
        minMargin = std::min(minMargin, step.margin);
    }
    m_summary = QStringLiteral("(%1, %2) %3 · min margin %4")
                    .arg(lineage.x)
                    .arg(lineage.y)
                    .arg(chain.join(QStringLiteral(" → ")))
                    .arg(minMargin, 0, 'f', 3);
    Q_EMIT summaryChanged(m_summary);
}

void LineagePanel::showNode(int node)
{
    const auto& p = m_result->pyramid;
    if (node < 0 || node >= static_cast<int>(p.nodes.size()))
        return;
    const auto& selected = p.nodes[node];
    m_header->setText(
        tr("<b>Segment L%1 #%2</b> and its ancestors (mean similarity and margin over the segment's blocks)")
            .arg(selected.level)
            .arg(selected.cluster));
    QStringList chain;
    for (int id = node; id >= 0; id = p.nodes[id].parent) {
        const auto& n = p.nodes[id];
        const auto mask = p.blockMask(id);
        double sim = 0, margin = 0;
        int64_t count = 0;
        for (size_t b = 0; b < mask.size(); ++b)
            if (mask[b]) {
                sim += p.similarity[n.level - 1][b];
                margin += p.margin[n.level - 1][b];
                ++count;
            }
        if (count) {
            sim /= count;
            margin /= count;
        }
        auto* item = new QTreeWidgetItem(m_table);
        item->setText(LevelCol, QString::number(n.level));
        item->setIcon(ClusterCol, swatchIcon(p.levels[n.level - 1].compact[n.cluster]));
        item->setText(ClusterCol, QStringLiteral("#%1").arg(n.cluster));
        item->setToolTip(ClusterCol,
                         tr("Cluster %1 of level %2 (hierarchy node %3)").arg(n.cluster).arg(n.level).arg(id));
        item->setText(GridCol, QStringLiteral("%1,%2").arg(n.gridRow).arg(n.gridCol));
        item->setText(SizeCol, QString::number(n.blocks));
        item->setText(SimilarityCol, QString::number(sim, 'f', 3));
        const double pct = percentile(n.level, static_cast<float>(margin));
        item->setText(MarginCol, QStringLiteral("%1 · p%2").arg(margin, 0, 'f', 3).arg(std::lround(pct * 100)));
        item->setData(MarginCol, kBarRole, pct);
        chain << QStringLiteral("L%1 #%2").arg(n.level).arg(n.cluster);
    }
    m_summary = tr("selected %1").arg(chain.join(QStringLiteral(" → ")));
    Q_EMIT summaryChanged(m_summary);
}

}  // namespace fec::ui
