#pragma once

// Keeps several ImageViews at the same zoom and centre: whatever the user does in one view
// happens in the others.

#include <QList>
#include <QObject>
#include <QPointer>

#include "fec/ui/image_view.h"

namespace fec::ui {

class ViewSync : public QObject {
    Q_OBJECT
public:
    explicit ViewSync(QObject* parent = nullptr);

    void addView(ImageView* view);
    void removeView(ImageView* view);
    QList<ImageView*> views() const;
    /// When off, views move independently.
    void setEnabled(bool enabled);
    bool isEnabled() const { return m_enabled; }

private:
    void propagate(ImageView* source, const ViewState& state);

    // Raw pointers, each removed when its view is destroyed: QPointer would down-cast a view that
    // is already half destroyed when its destroyed() signal compares entries (UBSan reports it).
    QList<ImageView*> m_views;
    bool m_enabled = true;
    bool m_propagating = false;
};

}  // namespace fec::ui
