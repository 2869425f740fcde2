#pragma once

// What was found in the loaded checkpoint (format, layout, weights, architecture, parameters,
// classes, device): the facts `fec inspect` prints.

#include <QWidget>

#include "fec/ui/model_summary.h"

class QLabel;
class QTableWidget;

namespace fec::ui {

class ModelInfoPanel : public QWidget {
    Q_OBJECT
public:
    explicit ModelInfoPanel(QWidget* parent = nullptr);

    void setSummary(const ModelSummary& summary, const QString& title = QString());
    void setSecondarySummary(const ModelSummary& summary);
    /// Shows a message instead of a model (e.g. "Loading…" or an error).
    void setMessage(const QString& message);
    QTableWidget* table() const { return m_table; }

private:
    void addRows(const ModelSummary& summary, const QString& heading);

    QLabel* m_title = nullptr;
    QTableWidget* m_table = nullptr;
    ModelSummary m_primary;
    ModelSummary m_secondary;
};

}  // namespace fec::ui
