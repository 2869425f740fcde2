#include "fec/ui/heads_view.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include <QComboBox>
#include <QEvent>
#include <QGridLayout>
#include <QHelpEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QLinearGradient>
#include <QPainter>
#include <QScrollArea>
#include <QToolTip>
#include <QVBoxLayout>

#include "fec/figure/figure.h"
#include "fec/imaging/render.h"
#include "view_style.h"

namespace fec::ui {

namespace {

// One head: its partition over the model input, with the title right above the picture. Tiles
// keep the picture's aspect (height follows width).
class HeadTile : public QWidget {
public:
    HeadTile(QString title, QImage image, QWidget* parent)
        : QWidget(parent), m_title(std::move(title)), m_image(std::move(image))
    {
        QSizePolicy policy(QSizePolicy::Expanding, QSizePolicy::Preferred);
        policy.setHeightForWidth(true);
        setSizePolicy(policy);
        setMinimumWidth(kMinTile);
    }
    static constexpr int kMinTile = 150;
    const QImage& image() const { return m_image; }
    const QString& title() const { return m_title; }
    bool hasHeightForWidth() const override { return true; }
    int heightForWidth(int width) const override
    {
        const double aspect = m_image.isNull() ? 1.0 : double(m_image.height()) / m_image.width();
        return titleHeight() + static_cast<int>(width * aspect);
    }
    void setPreferredWidth(int width)
    {
        m_preferred = width;
        updateGeometry();
    }
    QSize sizeHint() const override { return {m_preferred, heightForWidth(m_preferred)}; }
    int titleHeight() const { return fontMetrics().height() + 6; }
    QSize minimumSizeHint() const override { return {kMinTile, heightForWidth(kMinTile)}; }

protected:
    void paintEvent(QPaintEvent*) override
    {
        QPainter p(this);
        p.setRenderHint(QPainter::SmoothPixmapTransform);
        const int titleH = titleHeight();
        const QRect area(0, titleH, width(), height() - titleH);
        QSize fit = m_image.isNull() ? area.size() : m_image.size().scaled(area.size(), Qt::KeepAspectRatio);
        const QRect target(area.x() + (area.width() - fit.width()) / 2, area.y(), fit.width(), fit.height());
        p.setPen(palette().color(QPalette::WindowText));
        p.drawText(QRect(0, 0, width(), titleH), Qt::AlignHCenter | Qt::AlignVCenter,
                   fontMetrics().elidedText(m_title, Qt::ElideRight, width()));
        if (m_image.isNull() || area.height() <= 0)
            return;
        p.drawImage(target, m_image);
        QColor frame = palette().color(QPalette::WindowText);
        frame.setAlphaF(0.3);
        p.setPen(frame);
        p.drawRect(target.adjusted(0, 0, -1, -1));
    }

private:
    QString m_title;
    QImage m_image;
    int m_preferred = 240;
};

// The legend under the matrix: end labels under the bar's ends and the caption on a line of its
// own below them, so that the caption never runs into the end labels however narrow the bar is.
struct LegendLayout {
    QRect bar, low, high, caption;
    QString captionText;
};

LegendLayout legendLayout(const QFontMetrics& fm, const QRect& bar, int areaWidth, const QString& caption)
{
    LegendLayout l;
    l.bar = bar;
    const int labelsTop = bar.bottom() + 3;
    const int lowW = fm.horizontalAdvance(QStringLiteral("0")) + 2;
    const int highW = fm.horizontalAdvance(QStringLiteral("1")) + 2;
    l.low = QRect(bar.left(), labelsTop, lowW, fm.height());
    l.high = QRect(bar.left() + bar.width() - highW, labelsTop, highW, fm.height());
    l.captionText = fm.elidedText(caption, Qt::ElideRight, std::max(0, areaWidth - 2));
    const int captionW = fm.horizontalAdvance(l.captionText) + 2;
    // Centred under the bar, moved left or right where the widget's edge would cut it.
    const int left = std::clamp(bar.center().x() - captionW / 2, 0, std::max(0, areaWidth - captionW));
    l.caption = QRect(left, l.low.bottom() + 1, captionW, fm.height());
    return l;
}

// Heads x heads adjusted Rand indices, coloured on a sequential scale.
class AgreementMatrix : public QWidget {
public:
    explicit AgreementMatrix(QWidget* parent) : QWidget(parent)
    {
        setMinimumSize(220, 240);
        setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Preferred);
    }
    void setMatrix(std::vector<double> values, int heads)
    {
        m_values = std::move(values);
        m_heads = heads;
        update();
    }
    QSize sizeHint() const override { return {260, 300}; }
    // The colour legend (0 .. 1) under the matrix; empty while there are no heads.
    LegendLayout legend() const
    {
        if (m_heads <= 0)
            return {};
        const QFontMetrics fm(font());
        const Geometry g = layoutGeometry();
        const QRect bar(g.x0, g.y0 + m_heads * g.cell + kLegendGap, std::max(g.cell * m_heads, 120), barHeight(fm));
        return legendLayout(fm, bar, width(), tr("adjusted Rand index"));
    }

protected:
    bool event(QEvent* e) override
    {
        if (e->type() == QEvent::ToolTip) {
            auto* help = static_cast<QHelpEvent*>(e);
            const Geometry g = layoutGeometry();
            const QPoint p = help->pos() - QPoint(g.x0, g.y0);
            if (m_heads > 0 && p.x() >= 0 && p.y() >= 0 && p.x() < g.cell * m_heads && p.y() < g.cell * m_heads) {
                const int i = p.y() / g.cell, j = p.x() / g.cell;
                QToolTip::showText(help->globalPos(),
                                   tr("Head %1 vs head %2: adjusted Rand index %3")
                                       .arg(i)
                                       .arg(j)
                                       .arg(m_values[static_cast<size_t>(i) * m_heads + j], 0, 'f', 3),
                                   this);
            } else {
                QToolTip::hideText();
            }
            return true;
        }
        return QWidget::event(e);
    }

    void paintEvent(QPaintEvent*) override
    {
        QPainter p(this);
        p.setRenderHint(QPainter::Antialiasing);
        const QColor text = palette().color(QPalette::WindowText);
        const QFontMetrics fm(font());
        p.setPen(text);
        QFont bold = font();
        bold.setBold(true);
        p.setFont(bold);
        p.drawText(QRect(0, 0, width(), fm.height() + 4), Qt::AlignLeft | Qt::AlignVCenter,
                   tr("Agreement between heads (ARI)"));
        p.setFont(font());
        if (m_heads <= 0)
            return;
        const Geometry g = layoutGeometry();
        const int top = g.top, label = g.label, cell = g.cell, x0 = g.x0, y0 = g.y0;
        for (int i = 0; i < m_heads; ++i) {
            p.setPen(text);
            p.drawText(QRect(x0 + i * cell, top, cell, label), Qt::AlignCenter, QStringLiteral("h%1").arg(i));
            p.drawText(QRect(0, y0 + i * cell, label - 4, cell), Qt::AlignRight | Qt::AlignVCenter,
                       QStringLiteral("h%1").arg(i));
            for (int j = 0; j < m_heads; ++j) {
                const double v = m_values[static_cast<size_t>(i) * m_heads + j];
                const QColor c = style::sequential(v);
                const QRect r(x0 + j * cell, y0 + i * cell, cell, cell);
                p.fillRect(r, c);
                if (cell >= fm.horizontalAdvance(QStringLiteral("-0.00")) + 4) {
                    p.setPen(style::textOn(c));
                    p.drawText(r, Qt::AlignCenter, QString::number(v, 'f', 2));
                }
            }
        }
        const LegendLayout l = legend();
        QLinearGradient gradient(l.bar.topLeft(), l.bar.topRight());
        for (int s = 0; s <= 8; ++s)
            gradient.setColorAt(s / 8.0, style::sequential(s / 8.0));
        p.fillRect(l.bar, gradient);
        p.setPen(text);
        p.drawText(l.low, Qt::AlignLeft | Qt::AlignTop, QStringLiteral("0"));
        p.drawText(l.high, Qt::AlignRight | Qt::AlignTop, QStringLiteral("1"));
        p.drawText(l.caption, Qt::AlignHCenter | Qt::AlignTop, l.captionText);
    }

private:
    static constexpr int kLegendGap = 10;
    static int barHeight(const QFontMetrics& fm) { return fm.height() / 2 + 4; }

    struct Geometry {
        int top, label, cell, x0, y0;
    };
    Geometry layoutGeometry() const
    {
        const QFontMetrics fm(font());
        Geometry g{};
        g.top = fm.height() + 10;
        g.label = fm.horizontalAdvance(QStringLiteral("h00")) + 6;
        // Gap, bar, end labels, caption (see legendLayout) and a small margin.
        const int legendH = kLegendGap + barHeight(fm) + 3 + 2 * fm.height() + 4;
        const int avail = std::min(width() - g.label - 4, height() - g.top - g.label - legendH);
        g.cell = m_heads > 0 ? std::clamp(avail / m_heads, 8, 56) : 8;
        g.x0 = g.label;
        g.y0 = g.top + g.label;
        return g;
    }

    std::vector<double> m_values;
    int m_heads = 0;
};

}  // namespace

struct HeadsView::Private {
    ExplainResultPtr result;
    int block = -1;
    QComboBox* combo = nullptr;
    QLabel* summary = nullptr;
    QLabel* placeholder = nullptr;
    QWidget* body = nullptr;
    QScrollArea* scroll = nullptr;
    int columns = 0, tileWidth = 0;
    QWidget* tileArea = nullptr;
    QGridLayout* tileGrid = nullptr;
    AgreementMatrix* matrix = nullptr;
    std::vector<HeadTile*> tiles;
    std::vector<double> means;

    // The column count that shows every head as large as possible without scrolling; when even
    // kMinTile-wide tiles do not fit, as many columns as fit and a vertical scroll bar.
    void layoutTiles()
    {
        if (tiles.empty())
            return;
        const int spacing = tileGrid->spacing();
        const QMargins m = tileGrid->contentsMargins();
        const int availW = scroll->viewport()->width() - m.left() - m.right();
        const int availH = scroll->viewport()->height() - m.top() - m.bottom();
        const int heads = static_cast<int>(tiles.size());
        const QImage& first = tiles.front()->image();
        const double aspect = first.isNull() ? 1.0 : double(first.height()) / first.width();
        const int titleH = tiles.front()->titleHeight();
        int bestColumns = 0;
        double bestWidth = 0;
        for (int c = 1; c <= heads; ++c) {
            const int rows = (heads + c - 1) / c;
            const double byWidth = double(availW - (c - 1) * spacing) / c;
            const double byHeight = (double(availH - (rows - 1) * spacing) / rows - titleH) / aspect;
            const double w = std::min(byWidth, byHeight);
            if (w >= HeadTile::kMinTile && w > bestWidth + 0.5) {
                bestColumns = c;
                bestWidth = w;
            }
        }
        if (bestColumns == 0) {
            bestColumns = std::clamp((availW + spacing) / (HeadTile::kMinTile + spacing), 1, heads);
            bestWidth =
                std::max<double>(HeadTile::kMinTile, double(availW - (bestColumns - 1) * spacing) / bestColumns);
        }
        const int tileWidth = static_cast<int>(bestWidth);
        if (bestColumns == columns && tileWidth == this->tileWidth && tileGrid->count() == heads)
            return;
        columns = bestColumns;
        this->tileWidth = tileWidth;
        for (auto* t : tiles) {
            tileGrid->removeWidget(t);
            t->setPreferredWidth(tileWidth);
        }
        for (int r = 0; r < tileGrid->rowCount(); ++r)
            tileGrid->setRowStretch(r, 0);
        for (int c = 0; c < tileGrid->columnCount(); ++c)
            tileGrid->setColumnStretch(c, 0);
        for (int h = 0; h < heads; ++h)
            tileGrid->addWidget(tiles[h], h / columns, h % columns, Qt::AlignHCenter | Qt::AlignTop);
        for (int c = 0; c < columns; ++c)
            tileGrid->setColumnStretch(c, 1);
        tileGrid->setRowStretch((heads + columns - 1) / columns, 1);
    }

    void clearTiles()
    {
        columns = 0;
        tileWidth = 0;
        for (auto* t : tiles)
            delete t;
        tiles.clear();
        means.clear();
    }

    void rebuildTiles()
    {
        clearTiles();
        if (!result || block < 0 || block >= static_cast<int>(result->partitions.size())) {
            matrix->setMatrix({}, 0);
            summary->clear();
            return;
        }
        const auto& part = result->partitions[block];
        const int heads = part.heads;
        const auto agreement = part.agreement.defined() ? part.agreement.to(at::kDouble).contiguous()
                                                        : at::ones({heads, heads}, at::kDouble);
        std::vector<double> values(agreement.data_ptr<double>(), agreement.data_ptr<double>() + heads * heads);
        double total = 0;
        for (int h = 0; h < heads; ++h) {
            double sum = 0;
            for (int j = 0; j < heads; ++j)
                if (j != h)
                    sum += values[static_cast<size_t>(h) * heads + j];
            means.push_back(heads > 1 ? sum / (heads - 1) : std::numeric_limits<double>::quiet_NaN());
            total += sum;
        }

        // The partition of each head over the model input the network saw.
        const cv::Mat& input = result->prepared.rgb;
        imaging::InputMapping identity;
        identity.inputSize = input.cols;
        identity.imageWidth = input.cols;
        identity.imageHeight = input.rows;
        imaging::OverlayStyle overlayStyle;
        overlayStyle.mode = imaging::OverlayStyle::Mode::Both;
        overlayStyle.opacity = 0.5;
        const auto assign = part.assign.to(at::kInt).contiguous();
        for (int h = 0; h < heads; ++h) {
            QImage image;
            if (!input.empty()) {
                const auto labels = assign[h].reshape({part.gridH, part.gridW}).contiguous();
                image = figure::toQImage(imaging::overlay(input, labels, identity, overlayStyle));
            }
            const QString title =
                heads > 1 ? tr("Head %1 · mean ARI %2").arg(h).arg(means[h], 0, 'f', 2) : tr("Head %1").arg(h);
            auto* tile = new HeadTile(title, image, tileArea);
            tile->setToolTip(tr("Head %1 of network.%2.%3.token_mixer: %4 centres on a %5x%6 grid, "
                                "one model-input cell every %7 pixels")
                                 .arg(h)
                                 .arg(part.stage * 2)
                                 .arg(part.block)
                                 .arg(part.centres)
                                 .arg(part.gridH)
                                 .arg(part.gridW)
                                 .arg(part.stride));
            tiles.push_back(tile);
        }
        layoutTiles();
        matrix->setMatrix(values, heads);
        summary->setText(heads > 1 ? tr("%1 heads · mean agreement %2")
                                         .arg(heads)
                                         .arg(total / (static_cast<double>(heads) * (heads - 1)), 0, 'f', 2)
                                   : tr("1 head"));
    }

    static QString tr(const char* text) { return HeadsView::tr(text); }
};

HeadsView::HeadsView(QWidget* parent) : QWidget(parent), d(std::make_unique<Private>())
{
    auto* layout = new QVBoxLayout(this);
    auto* bar = new QHBoxLayout;
    auto* label = new QLabel(tr("&Block:"), this);
    d->combo = new QComboBox(this);
    d->combo->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    label->setBuddy(d->combo);
    d->summary = new QLabel(this);
    bar->addWidget(label);
    bar->addWidget(d->combo);
    bar->addSpacing(12);
    bar->addWidget(d->summary);
    bar->addStretch(1);
    layout->addLayout(bar);

    d->placeholder = new QLabel(tr("Run a model on an image to see how each head of an encoding block "
                                   "partitions it."),
                                this);
    d->placeholder->setAlignment(Qt::AlignCenter);
    d->placeholder->setWordWrap(true);
    layout->addWidget(d->placeholder, 1);

    d->body = new QWidget(this);
    auto* bodyLayout = new QHBoxLayout(d->body);
    bodyLayout->setContentsMargins(0, 0, 0, 0);
    d->scroll = new QScrollArea(d->body);
    d->scroll->setWidgetResizable(true);
    d->scroll->setFrameShape(QFrame::NoFrame);
    d->scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    d->tileArea = new QWidget;
    d->tileGrid = new QGridLayout(d->tileArea);
    d->tileGrid->setSpacing(10);
    d->scroll->setWidget(d->tileArea);
    d->scroll->viewport()->installEventFilter(this);
    bodyLayout->addWidget(d->scroll, 1);
    d->matrix = new AgreementMatrix(d->body);
    bodyLayout->addWidget(d->matrix, 0, Qt::AlignTop);
    layout->addWidget(d->body, 1);
    d->body->setVisible(false);
    d->combo->setEnabled(false);

    connect(d->combo, &QComboBox::currentIndexChanged, this, [this](int index) {
        if (index >= 0)
            setBlock(index);
    });
}

HeadsView::~HeadsView() = default;

bool HeadsView::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == d->scroll->viewport() && event->type() == QEvent::Resize)
        d->layoutTiles();
    return QWidget::eventFilter(watched, event);
}

void HeadsView::setResult(ExplainResultPtr result)
{
    const int previous = d->block;
    d->result = std::move(result);
    const int blocks = d->result ? static_cast<int>(d->result->partitions.size()) : 0;
    {
        const QSignalBlocker blocker(d->combo);
        d->combo->clear();
        if (d->result)
            for (const auto& part : d->result->partitions)
                d->combo->addItem(tr("Stage %1 · block %2 (%3x%4, %5 centres)")
                                      .arg(part.stage)
                                      .arg(part.block)
                                      .arg(part.gridH)
                                      .arg(part.gridW)
                                      .arg(part.centres));
        d->block = blocks == 0 ? -1 : (previous >= 0 && previous < blocks ? previous : 0);
        d->combo->setCurrentIndex(d->block);
    }
    d->combo->setEnabled(blocks > 0);
    d->placeholder->setText(d->result && blocks == 0
                                ? tr("This result has no encoding-block trace (the model ran without block tracing).")
                                : tr("Run a model on an image to see how each head of an encoding block "
                                     "partitions it."));
    d->placeholder->setVisible(blocks == 0);
    d->body->setVisible(blocks > 0);
    d->rebuildTiles();
    if (d->block != previous)
        Q_EMIT blockChanged(d->block);
}

void HeadsView::setBlock(int index)
{
    if (!d->result || index < 0 || index >= static_cast<int>(d->result->partitions.size()) || index == d->block)
        return;
    d->block = index;
    {
        const QSignalBlocker blocker(d->combo);
        d->combo->setCurrentIndex(index);
    }
    d->rebuildTiles();
    Q_EMIT blockChanged(index);
}

int HeadsView::block() const
{
    return d->block;
}

int HeadsView::tileCount() const
{
    return static_cast<int>(d->tiles.size());
}

QImage HeadsView::tileImage(int head) const
{
    return head >= 0 && head < tileCount() ? d->tiles[head]->image() : QImage();
}

QString HeadsView::tileTitle(int head) const
{
    return head >= 0 && head < tileCount() ? d->tiles[head]->title() : QString();
}

HeadsView::ColourLegend HeadsView::colourLegend() const
{
    ColourLegend legend;
    if (!d->matrix->isVisibleTo(this))
        return legend;
    const LegendLayout l = d->matrix->legend();
    const QPoint origin = d->matrix->mapTo(this, QPoint(0, 0));
    legend.matrix = QRect(origin, d->matrix->size());
    if (l.bar.isEmpty())
        return legend;
    legend.bar = l.bar.translated(origin);
    legend.low = l.low.translated(origin);
    legend.high = l.high.translated(origin);
    legend.caption = l.caption.translated(origin);
    legend.captionText = l.captionText;
    return legend;
}

double HeadsView::meanAgreement(int head) const
{
    return head >= 0 && head < static_cast<int>(d->means.size()) ? d->means[head]
                                                                 : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace fec::ui
