#pragma once

// The bar over the image panels (pyramid, compare): groups of controls that wrap to a second row
// together when the panel is narrow, and the overlay style controls both panels share.

#include <opencv2/core.hpp>

#include <QWidget>

#include "fec/imaging/render.h"

class QComboBox;
class QHBoxLayout;
class QSlider;

namespace fec::ui {

class FlowLayout;

class PanelToolbar : public QWidget {
    Q_OBJECT
public:
    /// Controls kept together on one row; create them with `widget` as their parent.
    struct Group {
        QWidget* widget = nullptr;
        QHBoxLayout* row = nullptr;
    };
    /// The display mode combo (index 0 fill, 1 outline, 2 fill + outline) and the opacity slider
    /// (0 to 100 percent).
    struct StyleControls {
        QComboBox* mode = nullptr;
        QSlider* opacity = nullptr;
    };

    explicit PanelToolbar(QWidget* parent);

    /// A new group at the end of the bar.
    Group addGroup();
    /// Adds the display mode combo, "Opacity" and its slider to `group`.
    StyleControls addStyleControls(const Group& group);

    /// The overlay the style controls describe for `image`: mode from the combo index, fill
    /// opacity in [0, 1], outlines about 1/500 of the image's shorter side (at least 1 pixel).
    static imaging::OverlayStyle overlayStyle(int modeIndex, double opacity, const cv::Mat& image);

private:
    FlowLayout* m_flow = nullptr;
};

}  // namespace fec::ui
