#pragma once

// One training run as the explorer sees it: the settings (`fec train` flags), the run folder and
// the `fec train` child process. The process writes its output to RUN/train.log and its metrics to
// RUN/metrics.jsonl, both polled here; nothing ties it to the explorer's pipes, so a run can be
// left going when the explorer closes (detach) and is found again from its folder
// (RUN/explorer-process.json names the process).

#include <QDateTime>
#include <QJsonObject>
#include <QObject>
#include <QPointer>
#include <QStringList>
#include <QTimer>

#include "fec/ui/training_metrics.h"

class QProcess;

namespace fec::ui {

/// The settings of a run. Defaults are `fec train`'s (TrainOptions{}); arguments() passes only
/// what differs from them, plus the data and the run folder. The flags, their spelling and the
/// run.json keys come from the training options table (fec/train/train_options.h).
struct TrainingSpec {
    TrainingSpec();

    QString data;  ///< image folder root or Fashion-MNIST IDX folder
    QString val;   ///< separate validation data (empty: ROOT/val or the Fashion-MNIST test split)
    double valSplit = 0;
    qint64 trainLimit = 0, valLimit = 0;
    QString out;                                 ///< run folder
    QString checkpoint;                          ///< fine-tune from this file; empty: a new model of `arch`
    QString arch = QStringLiteral("fec_small");  ///< fec_small, fec_base, fec_large or custom
    /// Custom architecture: four comma-separated values each (empty: those of fec_small).
    QString layers, dims, heads, headDims, mlpRatios, proposals;
    QString freezeStages;  ///< e.g. "0,1"
    QString weights;       ///< of `checkpoint`: auto, state_dict or ema
    // `fec train`'s options (set from TrainOptions{} by the constructor).
    int size, epochs;
    qint64 maxSteps;
    int batch, accum;
    double lr, minLr, warmupLr, warmupEpochs, weightDecay;
    double clip, ema, dropPath, smoothing;
    double mixup, cutmix, reprob, hflip, cropScale;
    QString evalResize;  ///< squash or crop; empty: the data set's choice
    bool noAugment = false;
    bool tensorboard;
    quint64 seed;
    int workers;
    int logEvery;
    int threads = 0;  ///< fec's --threads (0: its default, one per core)
    QString device;
    /// More flags, split like a shell command line (QProcess::splitCommand).
    QString extraArguments;

    /// Why these settings cannot start a run; empty when they can.
    QString validate() const;
    /// `[--threads N] train --data ... --out ...`, the arguments of the fec executable.
    QStringList arguments() const;
    QJsonObject toJson() const;
    static TrainingSpec fromJson(const QJsonObject& json);
    /// What a run folder's run.json records (options and command), for display and "use these settings".
    static TrainingSpec fromRunJson(const QJsonObject& run, const QString& dir);
};

/// The trainer's structured final record: run.json's "final" object, written when a run ends
/// in a way the trainer controls (done, stopped by a signal or the cancel flag, an error caught).
struct RunFinalRecord {
    bool present = false;    ///< run.json has one (runs of older fec versions do not)
    QString status;          ///< "done", "stopped", "failed"
    qint64 steps = 0;        ///< optimizer steps completed
    qint64 totalSteps = 0;   ///< steps of the whole run
    int epochs = 0;          ///< epochs completed
    QString bestMetricName;  ///< "top1" or "ema_top1"; empty without validation
    double bestMetric = 0;   ///< percent
    int bestEpoch = -1;      ///< 0-based
    QString exitReason;      ///< the trainer's words
    QDateTime finishedAt;
    QString lastCheckpoint, bestCheckpoint;

    /// Reads run.json's "final" (present = false when it has none).
    static RunFinalRecord fromRunJson(const QJsonObject& run);
};

enum class RunStatus {
    New,       ///< not started yet
    Starting,  ///< process launched, not running yet
    Running,
    Stopping,  ///< SIGTERM sent: finishing the step and writing last.pth.tar
    Finished,  ///< every step done
    Stopped,   ///< stopped before the end; resumable from last.pth.tar
    Failed,    ///< could not start, non-zero exit, crash
};

QString runStatusName(RunStatus status);
/// A command line as a POSIX shell reads it (words quoted where needed), for display and copying.
QString shellCommand(const QStringList& command);

class TrainingRun : public QObject {
    Q_OBJECT
public:
    static constexpr int kPollMs = 250;

    /// A run to start into `spec.out`.
    explicit TrainingRun(const TrainingSpec& spec, QObject* parent = nullptr);
    /// Stops an attached process (SIGTERM, then waits up to 15 s, then kills): the destructor of
    /// QProcess would kill it without letting it save.
    ~TrainingRun() override;

    /// An existing run folder: settings from run.json, metrics from metrics.jsonl, the status from
    /// the files and from a process left running by an earlier session. nullptr (with `error`)
    /// when the folder holds neither run.json nor train.log.
    static TrainingRun* open(const QString& dir, QString* error, QObject* parent = nullptr);

    QString dir() const { return m_dir; }
    QString name() const;
    const TrainingSpec& spec() const { return m_spec; }
    RunStatus status() const { return m_status; }
    /// Starting, running or stopping.
    bool isActive() const;
    /// The process is this explorer's child (not one left by an earlier session).
    bool isAttached() const { return m_process != nullptr; }
    /// Exit code of the last process (-1 while none has exited).
    int exitCode() const { return m_exitCode; }
    /// One readable line: what happened (the error, "stopped at step N of M", ...).
    QString message() const { return m_message; }
    qint64 pid() const { return m_pid; }
    const MetricHistory& history() const { return m_history; }
    /// From the metrics, else run.json.
    qint64 totalSteps() const;
    int totalEpochs() const { return m_totalEpochs; }
    /// The last lines of RUN/train.log (the process's stdout and stderr).
    QStringList logTail() const { return m_logTail; }
    QString logPath() const;
    QString metricsPath() const;
    /// RUN/last.pth.tar and RUN/best.pth.tar, empty when absent.
    QString lastCheckpoint() const;
    QString bestCheckpoint() const;
    QDateTime startedAt() const { return m_startedAt; }
    /// The command of the current or last process (program first).
    QStringList commandLine() const { return m_commandLine; }
    /// run.json's final record as last read (present = false while running, and for old runs).
    const RunFinalRecord& finalRecord() const { return m_final; }

    /// Starts `fec train` with the settings (false, with message(), when it cannot be started).
    bool start(const QString& fecProgram);
    /// Starts `fec train --resume --out DIR` (the run's own settings; `epochs` > 0 extends it).
    bool resume(const QString& fecProgram, int epochs = 0);
    /// First call: SIGTERM (the trainer finishes the step, writes last.pth.tar and exits 0).
    /// Second call while stopping: SIGKILL.
    void stop();
    /// Lets the process outlive the explorer: it keeps writing the run folder, and a later session
    /// finds it through RUN/explorer-process.json. The run stops being watched.
    void detach();
    /// Reads new metrics and log lines and checks on an unattached process (a timer calls it while
    /// the run is active; public for tests).
    void poll();

Q_SIGNALS:
    void statusChanged(fec::ui::RunStatus status);
    /// A metric appended to history().
    void metricAdded(const fec::ui::TrainingMetric& metric);
    /// history() lost entries (a resume redoes them) or was re-read: redraw from it.
    void historyReset();
    void logAppended(const QString& text);
    /// last.pth.tar or best.pth.tar was (re)written.
    void checkpointWritten(const QString& path);
    /// Anything a run list shows changed.
    void changed();

private:
    bool launch(const QString& program, const QStringList& arguments);
    void setStatus(RunStatus status, const QString& message);
    void onProcessFinished(int exitCode, int exitStatus);
    void onProcessError(int error);
    void finishExternal();
    void readMetrics();
    void readLog(bool initial = false);
    void checkCheckpoints();
    void inferStatusFromFiles();
    /// Forgets a final record written before `since` (the start of the process that just ended).
    void dropStaleFinalRecord(const QDateTime& since);
    /// Sets the status and message from the final record; false when there is none.
    bool applyFinalRecord();
    void loadRunJson();
    void writeProcessFile();
    void removeProcessFile();
    QString processFilePath() const;
    static bool processAlive(qint64 pid, const QString& dir);

    TrainingSpec m_spec;
    QString m_dir;
    RunStatus m_status = RunStatus::New;
    QProcess* m_process = nullptr;
    QTimer m_timer;
    qint64 m_pid = 0;
    int m_exitCode = -1;
    QString m_message;
    bool m_stopRequested = false;
    bool m_killed = false;
    MetricHistory m_history;
    MetricsFileTail m_metrics;
    qint64 m_runTotalSteps = 0;
    int m_totalEpochs = 0;
    qint64 m_logOffset = 0;
    LineSplitter m_logLines;
    QStringList m_logTail;
    QDateTime m_lastModified, m_bestModified;
    QDateTime m_startedAt;
    QDateTime m_launchedAt;  ///< before the process existed: final records older than this are stale
    QStringList m_commandLine;
    RunFinalRecord m_final;
};

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::RunStatus)
