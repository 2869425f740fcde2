#include "fec/ui/prediction_panel.h"

#include <algorithm>
#include <cmath>

#include <QPainter>

namespace fec::ui {

PredictionPanel::PredictionPanel(QWidget* parent) : QWidget(parent)
{
    m_empty = tr("No prediction yet");
    setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Minimum);
}

void PredictionPanel::setPredictions(const std::vector<std::pair<QString, double>>& predictions,
                                     const QString& emptyText)
{
    // A probability that is not a number is never drawn as a ranking.
    const bool finite = std::all_of(predictions.begin(), predictions.end(),
                                    [](const std::pair<QString, double>& p) { return std::isfinite(p.second); });
    m_predictions = finite ? predictions : std::vector<std::pair<QString, double>>{};
    if (!finite)
        m_empty = tr("The model's outputs are not finite (NaN/inf): no ranking is shown.");
    else if (!emptyText.isEmpty())
        m_empty = emptyText;
    updateGeometry();
    update();
}

QSize PredictionPanel::sizeHint() const
{
    const int line = fontMetrics().height();
    return {260, 12 + 5 * (2 * line + 8)};
}

QSize PredictionPanel::minimumSizeHint() const
{
    const int line = fontMetrics().height();
    return {160, 12 + 5 * (2 * line + 8)};
}

void PredictionPanel::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    const QPalette pal = palette();
    const QFontMetrics fm = fontMetrics();
    if (m_predictions.empty()) {
        p.setPen(pal.color(QPalette::PlaceholderText));
        p.drawText(rect().adjusted(8, 8, -8, -8), Qt::AlignLeft | Qt::AlignTop | Qt::TextWordWrap, m_empty);
        return;
    }
    const int line = fm.height();
    const int margin = 8;
    const int barHeight = std::max(6, line / 2);
    int y = margin;
    const bool dark = pal.color(QPalette::Window).lightness() < 128;
    const QColor accent = dark ? QColor(86, 180, 233) : QColor(0, 114, 178);
    for (size_t i = 0; i < m_predictions.size(); ++i) {
        const auto& [name, prob] = m_predictions[i];
        const QString pct = QStringLiteral("%1%").arg(prob * 100, 0, 'f', prob >= 0.1 ? 1 : 2);
        const int pctWidth = fm.horizontalAdvance(QStringLiteral("100.0%"));
        QFont f = font();
        f.setBold(i == 0);
        p.setFont(f);
        p.setPen(pal.color(QPalette::WindowText));
        const QRect nameRect(margin, y, width() - 3 * margin - pctWidth, line);
        p.drawText(nameRect, Qt::AlignLeft | Qt::AlignVCenter,
                   QFontMetrics(f).elidedText(name, Qt::ElideRight, nameRect.width()));
        p.drawText(QRect(width() - margin - pctWidth, y, pctWidth, line), Qt::AlignRight | Qt::AlignVCenter, pct);
        y += line + 2;
        const QRectF track(margin, y, width() - 2 * margin, barHeight);
        p.setPen(Qt::NoPen);
        p.setBrush(pal.color(QPalette::Mid).lighter(dark ? 100 : 130));
        p.drawRoundedRect(track, barHeight / 2.0, barHeight / 2.0);
        QRectF bar = track;
        bar.setWidth(std::max(barHeight * 1.0, track.width() * std::clamp(prob, 0.0, 1.0)));
        p.setBrush(i == 0 ? accent : accent.darker(dark ? 140 : 80));
        p.drawRoundedRect(bar, barHeight / 2.0, barHeight / 2.0);
        y += barHeight + 8;
    }
}

}  // namespace fec::ui
