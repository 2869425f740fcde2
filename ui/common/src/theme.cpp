#include "fec/ui/theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyle>
#include <QStyleFactory>

namespace fec::ui {

Theme themeFromString(const QString& name)
{
    if (name.compare(QLatin1String("dark"), Qt::CaseInsensitive) == 0)
        return Theme::Dark;
    if (name.compare(QLatin1String("light"), Qt::CaseInsensitive) == 0)
        return Theme::Light;
    return Theme::System;
}

QString themeName(Theme theme)
{
    switch (theme) {
    case Theme::Dark:
        return QStringLiteral("dark");
    case Theme::Light:
        return QStringLiteral("light");
    case Theme::System:
        break;
    }
    return QStringLiteral("system");
}

namespace {

QPalette darkPalette()
{
    QPalette p;
    const QColor window(45, 47, 51), base(31, 33, 36), text(224, 226, 230), disabled(128, 131, 137);
    const QColor highlight(64, 140, 214);
    p.setColor(QPalette::Window, window);
    p.setColor(QPalette::WindowText, text);
    p.setColor(QPalette::Base, base);
    p.setColor(QPalette::AlternateBase, QColor(39, 41, 45));
    p.setColor(QPalette::ToolTipBase, QColor(60, 63, 68));
    p.setColor(QPalette::ToolTipText, text);
    p.setColor(QPalette::PlaceholderText, QColor(150, 154, 160));
    p.setColor(QPalette::Text, text);
    p.setColor(QPalette::Button, QColor(55, 58, 63));
    p.setColor(QPalette::ButtonText, text);
    p.setColor(QPalette::BrightText, QColor(255, 110, 110));
    p.setColor(QPalette::Light, QColor(75, 78, 84));
    p.setColor(QPalette::Midlight, QColor(62, 65, 70));
    p.setColor(QPalette::Mid, QColor(40, 42, 46));
    p.setColor(QPalette::Dark, QColor(25, 26, 29));
    p.setColor(QPalette::Shadow, QColor(10, 10, 12));
    p.setColor(QPalette::Highlight, highlight);
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::Link, QColor(110, 175, 240));
    p.setColor(QPalette::LinkVisited, QColor(170, 140, 230));
    for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
        p.setColor(QPalette::Disabled, role, disabled);
    p.setColor(QPalette::Disabled, QPalette::Highlight, QColor(70, 73, 78));
    return p;
}

QPalette lightPalette()
{
    QPalette p;
    const QColor window(240, 241, 243), text(28, 30, 33);
    p.setColor(QPalette::Window, window);
    p.setColor(QPalette::WindowText, text);
    p.setColor(QPalette::Base, Qt::white);
    p.setColor(QPalette::AlternateBase, QColor(246, 247, 249));
    p.setColor(QPalette::ToolTipBase, QColor(255, 255, 225));
    p.setColor(QPalette::ToolTipText, text);
    p.setColor(QPalette::PlaceholderText, QColor(110, 114, 120));
    p.setColor(QPalette::Text, text);
    p.setColor(QPalette::Button, QColor(232, 234, 237));
    p.setColor(QPalette::ButtonText, text);
    p.setColor(QPalette::BrightText, QColor(200, 0, 0));
    p.setColor(QPalette::Light, Qt::white);
    p.setColor(QPalette::Midlight, QColor(226, 228, 231));
    p.setColor(QPalette::Mid, QColor(190, 193, 198));
    p.setColor(QPalette::Dark, QColor(150, 153, 158));
    p.setColor(QPalette::Shadow, QColor(90, 90, 95));
    p.setColor(QPalette::Highlight, QColor(0, 114, 178));
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::Link, QColor(0, 90, 170));
    for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
        p.setColor(QPalette::Disabled, role, QColor(150, 153, 158));
    return p;
}

}  // namespace

void applyTheme(Theme theme)
{
    auto* app = qobject_cast<QApplication*>(QCoreApplication::instance());
    if (!app)
        return;
    if (auto* fusion = QStyleFactory::create(QStringLiteral("Fusion")))
        QApplication::setStyle(fusion);
    QPalette palette = theme == Theme::Dark    ? darkPalette()
                       : theme == Theme::Light ? lightPalette()
                                               : QApplication::style()->standardPalette();
    QApplication::setPalette(palette);
    const bool dark = palette.color(QPalette::Window).lightness() < 128;
    app->setStyleSheet(
        QStringLiteral("QWidget#panelBar { background: %1; border-bottom: 1px solid %2; }"
                       "QToolTip { padding: 4px; }")
            .arg(palette.color(QPalette::Window).darker(dark ? 112 : 104).name(), palette.color(QPalette::Mid).name()));
}

}  // namespace fec::ui
