#include "fec/ui/welcome_page.h"

#include <algorithm>

#include <QDir>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QIcon>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

namespace fec::ui {

namespace {

QIcon icon(const QString& name)
{
    return QIcon(QStringLiteral(":/fec-explorer/icons/%1.svg").arg(name));
}

}  // namespace

WelcomePage::WelcomePage(QWidget* parent) : QWidget(parent)
{
    auto* outer = new QVBoxLayout(this);
    outer->addStretch(2);
    auto* column = new QWidget(this);
    // A fixed width lets the word-wrapped text get the height it needs.
    column->setFixedWidth(600);
    auto* layout = new QVBoxLayout(column);
    auto* logo = new QLabel(column);
    logo->setPixmap(icon(QStringLiteral("fec-explorer")).pixmap(72, 72));
    layout->addWidget(logo, 0, Qt::AlignHCenter);
    auto* title = new QLabel(tr("FEC Explorer"), column);
    QFont f = title->font();
    f.setPointSizeF(f.pointSizeF() * 2.0);
    f.setBold(true);
    title->setFont(f);
    layout->addWidget(title, 0, Qt::AlignHCenter);
    m_text = new QLabel(column);
    m_text->setWordWrap(true);
    m_text->setAlignment(Qt::AlignHCenter);
    m_text->setTextFormat(Qt::RichText);
    layout->addWidget(m_text);
    auto* buttons = new QHBoxLayout;
    buttons->addStretch(1);
    auto* openModel = new QPushButton(icon(QStringLiteral("open-checkpoint")), tr("Open a checkpoint…"), column);
    openModel->setDefault(true);
    openModel->setMinimumHeight(34);
    auto* openImage = new QPushButton(icon(QStringLiteral("open-image")), tr("Open images…"), column);
    auto* openFolder = new QPushButton(icon(QStringLiteral("open-folder")), tr("Open a folder…"), column);
    for (auto* b : {openModel, openImage, openFolder}) {
        b->setMinimumHeight(34);
        buttons->addWidget(b);
    }
    buttons->addStretch(1);
    layout->addLayout(buttons);
    connect(openModel, &QPushButton::clicked, this, &WelcomePage::openCheckpointRequested);
    connect(openImage, &QPushButton::clicked, this, &WelcomePage::openImagesRequested);
    connect(openFolder, &QPushButton::clicked, this, &WelcomePage::openFolderRequested);
    m_recent = new QWidget(column);
    new QVBoxLayout(m_recent);
    m_recent->layout()->setContentsMargins(0, 12, 0, 0);
    layout->addWidget(m_recent);
    auto* hint = new QLabel(
        tr("Tip: drop checkpoints (.pth, .pth.tar, .pt), images or folders anywhere in this window."), column);
    hint->setForegroundRole(QPalette::PlaceholderText);
    hint->setAlignment(Qt::AlignHCenter);
    hint->setWordWrap(true);
    layout->addSpacing(12);
    layout->addWidget(hint);
    outer->addWidget(column, 0, Qt::AlignHCenter);
    outer->addStretch(3);
}

void WelcomePage::setState(bool defaultModelFound, const QString& samplesFolder, const QString& loading)
{
    QString text = tr("<p>See how an FEC network groups the pixels of an image into clusters, level by level, "
                      "and how those clusters link into a hierarchy.</p>"
                      "<p><b>No model is loaded.</b> Open a checkpoint: the authors' ImageNet checkpoints "
                      "(fec_small, fec_base, fec_large), bare state_dicts, dense-prediction backbones and this "
                      "project's own checkpoints all work.</p>");
    if (!defaultModelFound)
        text += tr("<p>The default model ships in <tt>models/</tt>; none was found there.</p>");
    if (!samplesFolder.isEmpty())
        text += tr("<p>Sample images: <tt>%1</tt></p>").arg(QDir::toNativeSeparators(samplesFolder).toHtmlEscaped());
    if (!loading.isEmpty())
        text += tr("<p><i>Loading %1…</i></p>").arg(loading.toHtmlEscaped());
    m_text->setText(text);
    // Laid out with an alignment, the label gets its plain size hint: reserve its wrapped height.
    const int margins = m_text->parentWidget()->layout()->contentsMargins().left() +
                        m_text->parentWidget()->layout()->contentsMargins().right();
    m_text->setMinimumHeight(m_text->heightForWidth(m_text->parentWidget()->width() - margins));
}

void WelcomePage::setRecentCheckpoints(const QStringList& paths)
{
    auto* layout = m_recent->layout();
    while (auto* item = layout->takeAt(0)) {
        delete item->widget();
        delete item;
    }
    if (paths.isEmpty())
        return;
    auto* label = new QLabel(tr("<b>Recent checkpoints</b>"), m_recent);
    label->setAlignment(Qt::AlignHCenter);
    layout->addWidget(label);
    for (int i = 0; i < std::min<int>(4, paths.size()); ++i) {
        const QString path = paths[i];
        auto* b = new QPushButton(QFileInfo(path).fileName(), m_recent);
        b->setFlat(true);
        b->setToolTip(path);
        b->setCursor(Qt::PointingHandCursor);
        connect(b, &QPushButton::clicked, this, [this, path] { Q_EMIT recentCheckpointChosen(path); });
        layout->addWidget(b);
    }
}

}  // namespace fec::ui
