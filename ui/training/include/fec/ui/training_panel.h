#pragma once

// The explorer's training panel: a form for `fec train` (data, model, run folder,
// hyper-parameters with the CLI's defaults), the runs of this and earlier sessions with their
// status, live charts and log of the selected run, and one-click probes that open a run's
// checkpoints in the explorer. Runs are `fec train` child processes (TrainingRun): a crash of a
// run cannot take the explorer down, and runs may be left going when the explorer closes.

#include <memory>

#include <QWidget>

class QSettings;

namespace fec::ui {

class TrainingCharts;
class TrainingRun;
class TrainingRunModel;
struct TrainingSpec;

class TrainingPanel : public QWidget {
    Q_OBJECT
public:
    /// `settings` (may be null: nothing is remembered) keeps the form and the list of runs; it
    /// must outlive the panel's use of it (saved on changes and in prepareClose(), not on destruction).
    explicit TrainingPanel(QSettings* settings = nullptr, QWidget* parent = nullptr);
    /// Attached runs still going are stopped (SIGTERM, they save last.pth.tar): call detachAll()
    /// first to leave them running.
    ~TrainingPanel() override;

    /// The `fec` executable: next to this program, else on PATH; empty when neither has one.
    static QString findFecProgram();
    /// Overrides the executable the runs use (tests point it at fakes).
    void setFecProgram(const QString& path);
    QString fecProgram() const;
    /// Off: no dialogs (errors go to errorOccurred and the panel), closing stops the runs.
    void setInteractive(bool interactive);

    /// The form's settings, and setting the form.
    TrainingSpec spec() const;
    void setSpec(const TrainingSpec& spec);

    TrainingRunModel* model() const;
    TrainingCharts* charts() const;
    TrainingRun* currentRun() const;
    void setCurrentRun(TrainingRun* run);

    /// Starts a run with the form's settings and selects it; nullptr (see lastError()) when it could not.
    TrainingRun* startRun();
    /// Adds an existing run folder (or selects it when listed); nullptr (see lastError()) when it is none.
    TrainingRun* openRunFolder(const QString& dir);
    bool stopRun(TrainingRun* run);
    bool resumeRun(TrainingRun* run);
    /// Opens RUN/last.pth.tar or RUN/best.pth.tar in the explorer (openCheckpointRequested).
    bool probe(TrainingRun* run, bool best = false);
    /// Open each new last.pth.tar of the selected run in the explorer, so its pyramid follows training.
    void setFollowCheckpoints(bool follow);
    bool followCheckpoints() const;

    /// Runs of this session whose process is still going.
    int activeRunCount() const;
    /// Stops every active run of this session and waits (up to `timeoutMs`, then kills them).
    void stopAllAndWait(int timeoutMs = 60000);
    /// Leaves every active run of this session running after the explorer exits.
    void detachAll();

    enum class CloseAction { Ask, Stop, Detach };
    /// Before the window closes: Ask offers Stop / Leave running / Cancel when runs are active.
    /// False when the user cancelled.
    bool prepareClose(CloseAction action);

    QString lastError() const;

Q_SIGNALS:
    void openCheckpointRequested(const QString& path);
    void errorOccurred(const QString& message);
    void currentRunChanged(fec::ui::TrainingRun* run);

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
