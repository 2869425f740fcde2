#pragma once

// `fec-explorer --screenshot FILE.png`: waits until the window has loaded, run and drawn
// everything it was asked to, saves the whole window atomically and reports how it went.

#include <QElapsedTimer>
#include <QObject>
#include <QPointer>
#include <QString>
#include <QTimer>

namespace fec::ui {

class MainWindow;

class ScreenshotTask : public QObject {
    Q_OBJECT
public:
    /// `timeoutMs`: give up (and fail) after this long.
    ScreenshotTask(MainWindow* window, const QString& path, int timeoutMs = 120000, QObject* parent = nullptr);

    /// Starts watching the window; finished() follows exactly once.
    void start();

Q_SIGNALS:
    /// exitCode 0 on success; `message` says what was written or what went wrong.
    void finished(int exitCode, const QString& message);

private:
    void poll();
    void fail(const QString& message);

    QPointer<MainWindow> m_window;
    QString m_path;
    int m_timeoutMs;
    QTimer m_timer;
    QElapsedTimer m_clock;
    int m_settledPolls = 0;
    bool m_done = false;
};

}  // namespace fec::ui
