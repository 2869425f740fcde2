#include "fec/ui/flow_layout.h"

#include <QWidget>

namespace fec::ui {

FlowLayout::FlowLayout(QWidget* parent, int hSpacing, int vSpacing)
    : QLayout(parent), m_hSpacing(hSpacing), m_vSpacing(vSpacing)
{
}

FlowLayout::~FlowLayout()
{
    while (QLayoutItem* item = takeAt(0))
        delete item;
}

void FlowLayout::addItem(QLayoutItem* item)
{
    m_items.append(item);
}

int FlowLayout::count() const
{
    return static_cast<int>(m_items.size());
}

QLayoutItem* FlowLayout::itemAt(int index) const
{
    return m_items.value(index);
}

QLayoutItem* FlowLayout::takeAt(int index)
{
    return index >= 0 && index < m_items.size() ? m_items.takeAt(index) : nullptr;
}

Qt::Orientations FlowLayout::expandingDirections() const
{
    return {};
}

bool FlowLayout::hasHeightForWidth() const
{
    return true;
}

int FlowLayout::heightForWidth(int width) const
{
    return doLayout(QRect(0, 0, width, 0), true);
}

void FlowLayout::setGeometry(const QRect& rect)
{
    QLayout::setGeometry(rect);
    doLayout(rect, false);
}

QSize FlowLayout::sizeHint() const
{
    // Everything on one row.
    int w = 0, h = 0;
    for (const auto* item : m_items) {
        if (item->isEmpty())
            continue;
        w += item->sizeHint().width() + (w ? m_hSpacing : 0);
        h = std::max(h, item->sizeHint().height());
    }
    const QMargins m = contentsMargins();
    return QSize(w + m.left() + m.right(), h + m.top() + m.bottom());
}

QSize FlowLayout::minimumSize() const
{
    QSize size;
    for (const auto* item : m_items)
        if (!item->isEmpty())
            size = size.expandedTo(item->minimumSize());
    const QMargins m = contentsMargins();
    return size + QSize(m.left() + m.right(), m.top() + m.bottom());
}

int FlowLayout::doLayout(const QRect& rect, bool testOnly) const
{
    const QMargins m = contentsMargins();
    const QRect area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom());
    int x = area.x(), y = area.y(), lineHeight = 0;
    // Items of a row are vertically centred on the row's height: measure rows first.
    QList<QPair<QLayoutItem*, QPoint>> placed;
    QList<int> rowOf;
    QList<int> rowHeights;
    for (auto* item : m_items) {
        if (item->isEmpty())
            continue;
        const QSize hint = item->sizeHint();
        if (x > area.x() && x + hint.width() > area.right() + 1) {
            x = area.x();
            y += lineHeight + m_vSpacing;
            rowHeights << lineHeight;
            lineHeight = 0;
        }
        placed.append({item, QPoint(x, y)});
        rowOf << static_cast<int>(rowHeights.size());
        x += hint.width() + m_hSpacing;
        lineHeight = std::max(lineHeight, hint.height());
    }
    rowHeights << lineHeight;
    if (!testOnly)
        for (int i = 0; i < placed.size(); ++i) {
            auto* item = placed[i].first;
            const QSize hint = item->sizeHint();
            const int rowHeight = rowHeights[rowOf[i]];
            item->setGeometry(QRect(placed[i].second + QPoint(0, (rowHeight - hint.height()) / 2),
                                    QSize(std::min(hint.width(), area.width()), hint.height())));
        }
    return y + lineHeight - rect.y() + m.bottom();
}

}  // namespace fec::ui
