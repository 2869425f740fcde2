#include "fec/ui/model_info_panel.h"

#include <QHeaderView>
#include <QLabel>
#include <QTableWidget>
#include <QVBoxLayout>

namespace fec::ui {

ModelInfoPanel::ModelInfoPanel(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    m_title = new QLabel(this);
    m_title->setWordWrap(true);
    layout->addWidget(m_title);
    m_table = new QTableWidget(0, 2, this);
    m_table->horizontalHeader()->hide();
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setWordWrap(true);
    m_table->setShowGrid(false);
    layout->addWidget(m_table, 1);
    setMessage(tr("No model loaded."));
}

void ModelInfoPanel::addRows(const ModelSummary& summary, const QString& heading)
{
    if (!heading.isEmpty()) {
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        auto* item = new QTableWidgetItem(heading);
        QFont f = item->font();
        f.setBold(true);
        item->setFont(f);
        m_table->setItem(r, 0, item);
        m_table->setSpan(r, 0, 1, 2);
    }
    for (const auto& [field, value] : summary.rows()) {
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        auto* key = new QTableWidgetItem(field);
        QFont keyFont = key->font();
        keyFont.setWeight(QFont::DemiBold);
        key->setFont(keyFont);
        m_table->setItem(r, 0, key);
        auto* val = new QTableWidgetItem(value);
        val->setToolTip(value);
        m_table->setItem(r, 1, val);
    }
}

void ModelInfoPanel::setSummary(const ModelSummary& summary, const QString& title)
{
    m_primary = summary;
    m_title->setText(title.isEmpty() ? QStringLiteral("<b>%1</b>").arg(summary.fileName.toHtmlEscaped()) : title);
    m_table->setRowCount(0);
    m_table->clearSpans();
    addRows(m_primary, QString());
    if (!m_secondary.path.isEmpty())
        addRows(m_secondary, tr("Comparison: %1").arg(m_secondary.fileName));
    m_table->resizeRowsToContents();
}

void ModelInfoPanel::setSecondarySummary(const ModelSummary& summary)
{
    m_secondary = summary;
    if (!m_primary.path.isEmpty())
        setSummary(m_primary);
}

void ModelInfoPanel::setMessage(const QString& message)
{
    m_primary = ModelSummary();
    m_title->setText(message);
    m_table->setRowCount(0);
}

}  // namespace fec::ui
