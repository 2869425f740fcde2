#include "fec/ui/screenshot.h"

#include <QDir>
#include <QFileInfo>
#include <QImageWriter>
#include <QSaveFile>

#include "fec/ui/main_window.h"

namespace fec::ui {

ScreenshotTask::ScreenshotTask(MainWindow* window, const QString& path, int timeoutMs, QObject* parent)
    : QObject(parent), m_window(window), m_path(path), m_timeoutMs(timeoutMs)
{
    m_timer.setInterval(100);
    connect(&m_timer, &QTimer::timeout, this, &ScreenshotTask::poll);
}

void ScreenshotTask::start()
{
    if (!m_window) {
        fail(tr("no window"));
        return;
    }
    connect(m_window, &MainWindow::errorOccurred, this, [this](const QString& message) { fail(message); });
    m_clock.start();
    m_timer.start();
}

void ScreenshotTask::fail(const QString& message)
{
    if (m_done)
        return;
    m_done = true;
    m_timer.stop();
    Q_EMIT finished(1, message);
}

void ScreenshotTask::poll()
{
    if (m_done)
        return;
    if (!m_window) {
        fail(tr("the window was closed before the screenshot"));
        return;
    }
    if (m_clock.elapsed() > m_timeoutMs) {
        fail(tr("timed out after %1 s waiting for the views to show the result").arg(m_timeoutMs / 1000));
        return;
    }
    // Two settled polls in a row: the paints queued by the last result have happened.
    m_settledPolls = m_window->isSettled() ? m_settledPolls + 1 : 0;
    if (m_settledPolls < 2)
        return;
    m_timer.stop();
    const QImage image = m_window->grabWindowImage();
    if (image.isNull()) {
        fail(tr("could not grab the window"));
        return;
    }
    QSaveFile file(m_path);
    const QByteArray format = QFileInfo(m_path).suffix().toLower().toLatin1();
    if (!file.open(QIODevice::WriteOnly)) {
        fail(tr("cannot write %1: %2").arg(QDir::toNativeSeparators(m_path), file.errorString()));
        return;
    }
    QImageWriter writer(&file, format.isEmpty() ? QByteArray("png") : format);
    if (!writer.write(image) || !file.commit()) {
        fail(tr("cannot write %1: %2").arg(QDir::toNativeSeparators(m_path), writer.errorString()));
        return;
    }
    m_done = true;
    Q_EMIT finished(
        0, tr("wrote %1 (%2×%3)").arg(QDir::toNativeSeparators(m_path)).arg(image.width()).arg(image.height()));
}

}  // namespace fec::ui
