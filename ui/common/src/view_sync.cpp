#include "fec/ui/view_sync.h"

namespace fec::ui {

ViewSync::ViewSync(QObject* parent) : QObject(parent) {}

void ViewSync::addView(ImageView* view)
{
    if (!view || m_views.contains(view))
        return;
    m_views.append(view);
    connect(view, &ImageView::viewStateChanged, this, [this, view](const ViewState& state) { propagate(view, state); });
    connect(view, &QObject::destroyed, this, [this, view] { m_views.removeAll(view); });
    // A newcomer adopts the group's current framing.
    for (const auto& other : std::as_const(m_views))
        if (other != view && m_enabled) {
            view->setViewState(other->viewState());
            break;
        }
}

void ViewSync::removeView(ImageView* view)
{
    m_views.removeAll(view);
    disconnect(view, nullptr, this, nullptr);
}

QList<ImageView*> ViewSync::views() const
{
    return m_views;
}

void ViewSync::setEnabled(bool enabled)
{
    m_enabled = enabled;
}

void ViewSync::propagate(ImageView* source, const ViewState& state)
{
    if (!m_enabled || m_propagating)
        return;
    m_propagating = true;
    for (const auto& view : std::as_const(m_views))
        if (view != source)
            view->setViewState(state);
    m_propagating = false;
}

}  // namespace fec::ui
