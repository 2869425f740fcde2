// The main window's status bar: the busy indicator with Cancel (what is loading or running),
// transient messages, the error line with its offers (ErrorPresenter's widgets), and the image,
// timing and device of the result shown.

#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QStatusBar>
#include <QTimer>
#include <QToolButton>

#include "fec/ui/error_presenter.h"
#include "fec/ui/model_info_panel.h"
#include "fec/ui/model_session.h"
#include "main_window_p.h"

namespace fec::ui {

void MainWindow::Private::buildStatusBar()
{
    auto* bar = q->statusBar();
    busyBox = new QWidget(bar);
    auto* busyLayout = new QHBoxLayout(busyBox);
    busyLayout->setContentsMargins(0, 0, 0, 0);
    auto* spinner = new QProgressBar(busyBox);
    spinner->setRange(0, 0);
    spinner->setFixedWidth(70);
    spinner->setMaximumHeight(14);
    spinner->setTextVisible(false);
    busyLabel = new QLabel(busyBox);
    auto* cancel = new QToolButton(busyBox);
    cancel->setText(tr("Cancel"));
    cancel->setToolTip(tr("Stop loading or running the model"));
    QObject::connect(cancel, &QToolButton::clicked, q, [this] {
        controller->cancel();
        timing = false;
        flash(tr("Cancelled"), 3000);
        updateBusy();
        updateCentralPage();
    });
    busyLayout->addWidget(spinner);
    busyLayout->addWidget(busyLabel);
    busyLayout->addWidget(cancel);
    bar->addWidget(busyBox);
    messageLabel = new QLabel(bar);
    bar->addWidget(messageLabel);
    bar->addWidget(errors->messageLabel(), 1);
    bar->addWidget(errors->offersBox());
    hoverLabel = new QLabel(bar);
    hoverLabel->setMinimumWidth(120);
    bar->addWidget(hoverLabel, 2);
    imageLabel = new QLabel(bar);
    timingLabel = new QLabel(bar);
    deviceLabel = new QLabel(bar);
    hoverLabel->setToolTip(tr("Pixel under the mouse and its cluster at every level"));
    imageLabel->setToolTip(tr("Image size and model input"));
    timingLabel->setToolTip(tr("Traced forward + analysis, and the time until every visible view was updated"));
    deviceLabel->setToolTip(tr("Compute device (Model ▸ Device)"));
    for (auto* l : {imageLabel, timingLabel, deviceLabel})
        bar->addPermanentWidget(l);
}

void MainWindow::Private::flash(const QString& text, int ms)
{
    messageLabel->setText(text);
    const int generation = ++messageGeneration;
    QTimer::singleShot(ms, messageLabel, [this, generation] {
        if (generation == messageGeneration)
            messageLabel->clear();
    });
}

void MainWindow::Private::updateBusy()
{
    const bool loading = controller->isLoading();
    const bool running = controller->isBusy() && !loading;
    busyBox->setVisible(loading || running);
    if (loading) {
        const QString name =
            QFileInfo(primary()->isLoading() ? primary()->options().path : secondary()->options().path).fileName();
        busyLabel->setText(tr("Loading %1…").arg(name));
    } else if (running && !controller->image().isEmpty()) {
        busyLabel->setText(
            tr("Running %1 on %2…").arg(primary()->summary().fileName, QFileInfo(controller->image()).fileName()));
    }
    if (loading && !primary()->isLoaded())
        info->setMessage(tr("Loading %1…").arg(QFileInfo(primary()->options().path).fileName()));
}

void MainWindow::Private::updateStatus()
{
    deviceLabel->setText(primary()->isLoaded() ? primary()->summary().device : tr("no model"));
    if (const ExplainResultPtr result = controller->result()) {
        const auto& m = result->prepared.mapping;
        const QString stored = primary()->summary().storedPreprocess;
        imageLabel->setText(tr("%1×%2 → %3×%3 %4")
                                .arg(result->image.cols)
                                .arg(result->image.rows)
                                .arg(m.inputSize)
                                .arg(!effectivePreprocess().isEmpty() ? effectivePreprocess()
                                     : !stored.isEmpty()              ? stored
                                                                      : QStringLiteral("squash")));
        timingLabel->setText(tr("run %1 ms · shown %2 ms")
                                 .arg(result->inferenceMs + result->analysisMs, 0, 'f', 0)
                                 .arg(lastUpdateMs, 0, 'f', 0));
        timingLabel->setToolTip(tr("Traced forward %1 ms + analysis %2 ms on the worker; %3 ms from choosing the image "
                                   "until every visible view was updated")
                                    .arg(result->inferenceMs, 0, 'f', 1)
                                    .arg(result->analysisMs, 0, 'f', 1)
                                    .arg(lastUpdateMs, 0, 'f', 1));
        q->setWindowTitle(tr("%1 — %2 — FEC Explorer").arg(QFileInfo(result->imagePath).fileName(), result->modelName));
    } else {
        imageLabel->clear();
        timingLabel->clear();
        q->setWindowTitle(primary()->isLoaded() ? tr("%1 — FEC Explorer").arg(primary()->summary().fileName)
                                                : tr("FEC Explorer"));
    }
}

}  // namespace fec::ui
