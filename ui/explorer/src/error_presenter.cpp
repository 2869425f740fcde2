#include "fec/ui/error_presenter.h"

#include <QAbstractButton>
#include <QAction>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHash>
#include <QLabel>
#include <QMessageBox>
#include <QPointer>
#include <QPushButton>
#include <QToolButton>

namespace fec::ui {

ErrorPresenter::ErrorPresenter(QWidget* window, bool interactive, QObject* parent)
    : QObject(parent), m_window(window), m_interactive(interactive)
{
    m_label = new QLabel(window);
    m_label->setStyleSheet(QStringLiteral("color: #d55e00;"));
    m_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_offersBox = new QWidget(window);
    auto* layout = new QHBoxLayout(m_offersBox);
    layout->setContentsMargins(0, 0, 0, 0);
    m_offersBox->hide();
}

void ErrorPresenter::report(const QString& title, const QString& message, bool dialog, const QList<QAction*>& offers)
{
    m_lastError = message.isEmpty() ? title : message;
    m_label->setText(QStringLiteral("⚠ %1").arg(m_lastError));
    m_label->setToolTip(m_lastError);
    setOffers(offers);
    Q_EMIT errorOccurred(m_lastError);
    if (!m_interactive) {
        qWarning("fec-explorer: %s", qPrintable(m_lastError));
        return;
    }
    if (!dialog)
        return;
    QMessageBox box(QMessageBox::Warning, tr("FEC Explorer"), title, QMessageBox::NoButton, m_window);
    box.setInformativeText(message);
    QHash<QAbstractButton*, QPointer<QAction>> chosen;
    for (auto* a : offers)
        chosen.insert(box.addButton(a->text(), QMessageBox::AcceptRole), a);
    box.addButton(offers.isEmpty() ? QMessageBox::Ok : QMessageBox::Close);
    box.exec();
    // The action may be gone when the dialog closes (a newer error replaced it).
    if (const auto action = chosen.value(box.clickedButton()))
        action->trigger();
}

void ErrorPresenter::reportFailure(const ExplainFailure& failure)
{
    QList<QAction*> offers;
    if (failure.retryOnCpu) {
        auto* retry = new QAction(tr("Retry on CPU"), this);
        retry->setObjectName(QStringLiteral("retryOnCpu"));
        retry->setToolTip(tr("Load the model on the CPU for this session (slower; uses main memory) and run again"));
        connect(retry, &QAction::triggered, this, [this, failure] { Q_EMIT retryOnCpuRequested(failure); });
        offers << retry;
    }
    if (failure.retrySize > 0) {
        const int size = failure.retrySize;
        auto* retry = new QAction(tr("Retry at %1 × %1").arg(size), this);
        retry->setObjectName(QStringLiteral("retrySmaller"));
        retry->setToolTip(tr("Run again at a smaller input size for this session (Model ▸ Input size)"));
        connect(retry, &QAction::triggered, this, [this, size] { Q_EMIT retryAtSizeRequested(size); });
        offers << retry;
    }
    // A checkpoint that cannot be opened always deserves a dialog; a run only when there is an offer.
    report(title(failure), message(failure), failure.loading || !offers.isEmpty(), offers);
}

void ErrorPresenter::clear()
{
    m_lastError.clear();
    m_label->clear();
    m_label->setToolTip(QString());
    setOffers({});
}

void ErrorPresenter::setOffers(const QList<QAction*>& offers)
{
    // Later, not now: this runs inside an action's own triggered() when it is taken.
    for (auto* b : m_offersBox->findChildren<QToolButton*>(QString(), Qt::FindDirectChildrenOnly))
        b->deleteLater();
    for (auto* a : std::as_const(m_offers))
        a->deleteLater();
    m_offers = offers;
    for (auto* a : offers) {
        a->setParent(this);
        auto* button = new QToolButton(m_offersBox);
        button->setDefaultAction(a);
        m_offersBox->layout()->addWidget(button);
        // Taking an offer withdraws all of them; the retry reports its own outcome.
        connect(a, &QAction::triggered, this, [this] { setOffers({}); });
    }
    m_offersBox->setVisible(!offers.isEmpty());
}

QString ErrorPresenter::title(const ExplainFailure& failure)
{
    const bool comparison = failure.model == ModelRole::Comparison;
    if (failure.loading) {
        const QString name = QFileInfo(failure.checkpoint).fileName();
        return failure.outOfMemory ? tr("Not enough memory to load %1").arg(name)
               : comparison        ? tr("Could not open the comparison checkpoint %1").arg(name)
                                   : tr("Could not open the checkpoint %1").arg(name);
    }
    if (comparison)
        return failure.outOfMemory ? tr("The comparison model ran out of memory")
                                   : tr("The comparison model could not explain the image");
    return failure.outOfMemory ? tr("Out of memory while explaining the image") : tr("Could not explain the image");
}

QString ErrorPresenter::message(const ExplainFailure& failure)
{
    if (!failure.outOfMemory)
        return failure.message;
    const bool cpu = failure.retryOnCpu;
    const bool smaller = failure.retrySize > 0;
    const QString advice = cpu && smaller ? tr("Not enough memory: retry on the CPU or at a smaller input size.")
                           : cpu     ? tr("Not enough memory: retry on the CPU, or close other programs using the GPU.")
                           : smaller ? tr("Not enough memory: retry at a smaller input size.")
                                     : tr("Not enough memory: close other programs or choose a smaller model.");
    return failure.message + QStringLiteral(" — ") + advice;
}

}  // namespace fec::ui
