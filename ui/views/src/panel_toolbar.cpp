#include "panel_toolbar.h"

#include <algorithm>
#include <cmath>

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>

#include "fec/ui/flow_layout.h"

namespace fec::ui {

PanelToolbar::PanelToolbar(QWidget* parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("panelBar"));
    m_flow = new FlowLayout(this, 14, 2);
    m_flow->setContentsMargins(8, 3, 8, 3);
}

PanelToolbar::Group PanelToolbar::addGroup()
{
    Group group;
    group.widget = new QWidget(this);
    group.row = new QHBoxLayout(group.widget);
    group.row->setContentsMargins(0, 0, 0, 0);
    group.row->setSpacing(6);
    m_flow->addWidget(group.widget);
    return group;
}

PanelToolbar::StyleControls PanelToolbar::addStyleControls(const Group& group)
{
    StyleControls controls;
    controls.mode = new QComboBox(group.widget);
    controls.mode->addItems({tr("Fill"), tr("Outline"), tr("Fill + outline")});
    controls.mode->setToolTip(tr("How segments are drawn over the image"));
    group.row->addWidget(controls.mode);
    group.row->addWidget(new QLabel(tr("Opacity"), group.widget));
    controls.opacity = new QSlider(Qt::Horizontal, group.widget);
    controls.opacity->setRange(0, 100);
    controls.opacity->setFixedWidth(80);
    controls.opacity->setToolTip(tr("Fill opacity"));
    group.row->addWidget(controls.opacity);
    return controls;
}

imaging::OverlayStyle PanelToolbar::overlayStyle(int modeIndex, double opacity, const cv::Mat& image)
{
    imaging::OverlayStyle style;
    style.mode = modeIndex == 0   ? imaging::OverlayStyle::Mode::Fill
                 : modeIndex == 1 ? imaging::OverlayStyle::Mode::Outline
                                  : imaging::OverlayStyle::Mode::Both;
    style.opacity = opacity;
    style.outlineThickness = std::max(1, static_cast<int>(std::lround(std::min(image.cols, image.rows) / 500.0)));
    return style;
}

}  // namespace fec::ui
