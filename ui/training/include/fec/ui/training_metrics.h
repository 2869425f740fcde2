#pragma once

// The metric lines `fec train` writes to RUN/metrics.jsonl (one JSON object per line, see
// docs/training.md "The run folder") as the training panel reads them: a tolerant parser, a
// splitter that holds back a partial last line, the history of one run (which rewinds when a
// resumed run redoes what followed its checkpoint) and an incremental reader of the file.

#include <optional>

#include <QByteArray>
#include <QList>
#include <QMetaType>
#include <QString>
#include <QVector>

namespace fec::ui {

struct TrainingMetric {
    enum class Phase { Train, Val };
    Phase phase = Phase::Train;
    int epoch = 0;          ///< 0-based
    qint64 step = 0;        ///< optimizer steps done
    qint64 totalSteps = 0;  ///< 0 when the line does not say
    double loss = 0;        ///< train: mean over the logged steps; val: mean cross-entropy
    double lr = 0;
    std::optional<double> top1, top5;                 ///< percent, where measured
    std::optional<double> emaLoss, emaTop1, emaTop5;  ///< val lines of runs with --ema
    double imagesPerSecond = 0;
    double time = 0;      ///< Unix seconds
    double elapsedS = 0;  ///< seconds since the process started training

    bool isTrain() const { return phase == Phase::Train; }
};

/// One metric line (surrounding white space allowed). Anything else (not JSON, not an object, no
/// phase/step/loss, an unknown phase) gives nullopt and, when `error` is given, the reason.
std::optional<TrainingMetric> parseMetricLine(const QByteArray& line, QString* error = nullptr);

/// Cuts a byte stream into lines. A partial last line is kept until its newline arrives; a line
/// longer than `maxLine` bytes is dropped whole (garbage must not grow memory without bound).
class LineSplitter {
public:
    explicit LineSplitter(qsizetype maxLine = 1 << 20);
    /// The lines completed by `bytes`, without their "\n" (and "\r").
    QList<QByteArray> feed(const QByteArray& bytes);
    const QByteArray& pending() const { return m_pending; }
    void clear();

private:
    QByteArray m_pending;
    qsizetype m_maxLine;
    bool m_skipping = false;
};

/// The metrics of one run in log order: train lines by step, val lines by epoch.
class MetricHistory {
public:
    /// Appends a metric. One at or before what is held (ordered by step, train before val at the
    /// same step) first drops everything from there on, as `fec train --resume` does in the file:
    /// returns true when it did (a chart must then be redrawn from the history).
    bool add(const TrainingMetric& metric);
    void clear();

    const QVector<TrainingMetric>& train() const { return m_train; }
    const QVector<TrainingMetric>& val() const { return m_val; }
    bool isEmpty() const { return m_train.isEmpty() && m_val.isEmpty(); }
    const TrainingMetric* latestTrain() const { return m_train.isEmpty() ? nullptr : &m_train.last(); }
    const TrainingMetric* latestVal() const { return m_val.isEmpty() ? nullptr : &m_val.last(); }
    /// Steps done and planned according to the newest line (0 when none).
    qint64 lastStep() const;
    qint64 totalSteps() const;
    /// Epoch (0-based) of the newest line, -1 when none.
    int lastEpoch() const;
    /// Best validation top-1 in percent (the EMA's when measured), -1 when none.
    double bestTop1() const;
    /// Seconds to the last step at the rate of the recent train lines of the same process
    /// (validations included); negative when it cannot be told yet.
    double etaSeconds() const;

private:
    QVector<TrainingMetric> m_train, m_val;
};

/// Reads a metrics.jsonl as it grows. Polling (not QFileSystemWatcher) because appends to a file
/// are not reliably reported; the file may be absent at first and is replaced (atomically) when
/// a run resumes.
class MetricsFileTail {
public:
    explicit MetricsFileTail(QString path = {});
    void setPath(const QString& path);
    const QString& path() const { return m_path; }

    struct Update {
        QVector<TrainingMetric> metrics;
        /// The file was replaced or truncated: `metrics` are its whole content again.
        bool restarted = false;
        /// Complete lines that were not metric lines.
        int rejected = 0;
        QString lastRejection;
    };
    /// Everything completed since the previous call (a partial last line waits).
    Update poll();
    /// Forget the position: the next poll reads the file from the start.
    void reset();

private:
    QString m_path;
    qint64 m_offset = 0;
    quint64 m_identity = 0;
    LineSplitter m_lines;
};

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::TrainingMetric)
