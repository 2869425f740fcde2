#pragma once

// The model's top classes for the current image, as labelled probability bars.

#include <utility>
#include <vector>

#include <QString>
#include <QWidget>

namespace fec::ui {

class PredictionPanel : public QWidget {
    Q_OBJECT
public:
    explicit PredictionPanel(QWidget* parent = nullptr);

    /// (class name, probability) pairs, best first; empty shows `emptyText`.
    void setPredictions(const std::vector<std::pair<QString, double>>& predictions,
                        const QString& emptyText = QString());
    const std::vector<std::pair<QString, double>>& predictions() const { return m_predictions; }

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    std::vector<std::pair<QString, double>> m_predictions;
    QString m_empty;
};

}  // namespace fec::ui
