#pragma once

// How the explorer window shows a failure: the message in the status bar with buttons for what
// it offers to do about it, a dialog (with the same offers) when interactive, a warning on stderr
// when not; for running out of memory, the advice and the "Retry on CPU" / "Retry at N × N" offers.

#include <QList>
#include <QObject>
#include <QString>

#include "fec/ui/explain_failure.h"

class QAction;
class QLabel;
class QWidget;

namespace fec::ui {

class ErrorPresenter : public QObject {
    Q_OBJECT
public:
    /// `window`: parent of the dialogs and (until the status bar takes them) of the status widgets.
    /// Not `interactive`: no dialogs; errors are only shown, signalled and printed.
    ErrorPresenter(QWidget* window, bool interactive, QObject* parent = nullptr);

    /// For the status bar: the last error, and buttons for the offers (hidden when none).
    QLabel* messageLabel() const { return m_label; }
    QWidget* offersBox() const { return m_offersBox; }

    /// Shows `message` (or `title` when it is empty); `offers` become buttons (this object owns
    /// them), also in the dialog when `dialog` and interactive. Taking an offer withdraws them all.
    void report(const QString& title, const QString& message, bool dialog, const QList<QAction*>& offers = {});
    /// A failure of the explain controller, with its retry offers (actions retryOnCpu, retrySmaller).
    void reportFailure(const ExplainFailure& failure);
    void clear();

    /// The last error reported (empty when none since clear()).
    QString lastError() const { return m_lastError; }
    QList<QAction*> offers() const { return m_offers; }

    /// What the dialog's heading says about `failure` ("Could not explain the image").
    static QString title(const ExplainFailure& failure);
    /// The engine's message, out of memory with what to do about it ("… retry on the CPU or at a
    /// smaller input size.").
    static QString message(const ExplainFailure& failure);

Q_SIGNALS:
    void errorOccurred(const QString& message);
    /// The user took "Retry on CPU" for `failure`.
    void retryOnCpuRequested(const fec::ui::ExplainFailure& failure);
    /// The user took "Retry at `size` × `size`".
    void retryAtSizeRequested(int size);

private:
    void setOffers(const QList<QAction*>& offers);

    QWidget* m_window = nullptr;
    bool m_interactive = true;
    QLabel* m_label = nullptr;
    QWidget* m_offersBox = nullptr;
    QList<QAction*> m_offers;
    QString m_lastError;
};

}  // namespace fec::ui
