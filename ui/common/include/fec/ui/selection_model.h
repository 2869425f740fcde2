#pragma once

// The linked selection shared by every view: the selected and hovered hierarchy node and the
// hovered model-input pixel. Views set it and repaint when it changes.

#include <QObject>
#include <QPoint>

namespace fec::ui {

class SelectionModel : public QObject {
    Q_OBJECT
public:
    explicit SelectionModel(QObject* parent = nullptr) : QObject(parent) {}

    /// Node id in ExplainResult::pyramid.nodes, or -1.
    int selectedNode() const { return m_selected; }
    int hoveredNode() const { return m_hovered; }
    /// Model-input pixel under the mouse in any image view, or (-1, -1).
    QPoint hoveredPixel() const { return m_pixel; }

    void setSelectedNode(int node)
    {
        if (node == m_selected)
            return;
        m_selected = node;
        Q_EMIT selectedNodeChanged(node);
    }
    void setHoveredNode(int node)
    {
        if (node == m_hovered)
            return;
        m_hovered = node;
        Q_EMIT hoveredNodeChanged(node);
    }
    void setHoveredPixel(QPoint pixel)
    {
        if (pixel == m_pixel)
            return;
        m_pixel = pixel;
        Q_EMIT hoveredPixelChanged(pixel);
    }
    /// Forget everything (a new result arrived).
    void clear()
    {
        setSelectedNode(-1);
        setHoveredNode(-1);
        setHoveredPixel(QPoint(-1, -1));
    }

Q_SIGNALS:
    void selectedNodeChanged(int node);
    void hoveredNodeChanged(int node);
    void hoveredPixelChanged(QPoint pixel);

private:
    int m_selected = -1;
    int m_hovered = -1;
    QPoint m_pixel{-1, -1};
};

}  // namespace fec::ui
