#include "fec/ui/training_metrics.h"

#include <algorithm>
#include <utility>

#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QJsonParseError>

#ifdef Q_OS_UNIX
#include <sys/stat.h>
#endif

namespace fec::ui {

namespace {

std::optional<double> optionalNumber(const QJsonObject& o, const char* key)
{
    const auto v = o.value(QLatin1String(key));
    if (!v.isDouble())
        return std::nullopt;
    return v.toDouble();
}

// Train lines sort before the val line of the same step (validation follows the epoch's last step).
std::pair<qint64, int> orderKey(const TrainingMetric& m)
{
    return {m.step, m.isTrain() ? 0 : 1};
}

// Identifies the open file, so that an atomic replacement (a new inode) is noticed.
quint64 fileIdentity(QFile& file)
{
#ifdef Q_OS_UNIX
    struct stat st {};
    if (::fstat(file.handle(), &st) != 0)
        return 0;
    return (static_cast<quint64>(st.st_dev) << 40) ^ static_cast<quint64>(st.st_ino);
#else
    Q_UNUSED(file);
    return 1;
#endif
}

}  // namespace

std::optional<TrainingMetric> parseMetricLine(const QByteArray& line, QString* error)
{
    const auto fail = [error](const QString& why) -> std::optional<TrainingMetric> {
        if (error)
            *error = why;
        return std::nullopt;
    };
    const QByteArray text = line.trimmed();
    if (text.isEmpty())
        return fail(QStringLiteral("empty line"));
    QJsonParseError parseError;
    const auto doc = QJsonDocument::fromJson(text, &parseError);
    if (parseError.error != QJsonParseError::NoError)
        return fail(QStringLiteral("not JSON (%1 at offset %2)").arg(parseError.errorString()).arg(parseError.offset));
    if (!doc.isObject())
        return fail(QStringLiteral("not a JSON object"));
    const QJsonObject o = doc.object();
    TrainingMetric m;
    const QString phase = o.value(QLatin1String("phase")).toString();
    if (phase == QLatin1String("train"))
        m.phase = TrainingMetric::Phase::Train;
    else if (phase == QLatin1String("val"))
        m.phase = TrainingMetric::Phase::Val;
    else
        return fail(phase.isEmpty() ? QStringLiteral("no \"phase\"")
                                    : QStringLiteral("unknown phase \"%1\"").arg(phase));
    if (!o.value(QLatin1String("step")).isDouble() || !o.value(QLatin1String("loss")).isDouble())
        return fail(QStringLiteral("no numeric \"step\" and \"loss\""));
    m.step = static_cast<qint64>(o.value(QLatin1String("step")).toDouble());
    if (m.step < 0)
        return fail(QStringLiteral("negative step"));
    m.epoch = o.value(QLatin1String("epoch")).toInt(0);
    m.totalSteps = static_cast<qint64>(o.value(QLatin1String("total_steps")).toDouble(0));
    m.loss = o.value(QLatin1String("loss")).toDouble();
    m.lr = o.value(QLatin1String("lr")).toDouble(0);
    m.top1 = optionalNumber(o, "top1");
    m.top5 = optionalNumber(o, "top5");
    m.emaLoss = optionalNumber(o, "ema_loss");
    m.emaTop1 = optionalNumber(o, "ema_top1");
    m.emaTop5 = optionalNumber(o, "ema_top5");
    m.imagesPerSecond = o.value(QLatin1String("images_per_s")).toDouble(0);
    m.time = o.value(QLatin1String("time")).toDouble(0);
    m.elapsedS = o.value(QLatin1String("elapsed_s")).toDouble(0);
    return m;
}

LineSplitter::LineSplitter(qsizetype maxLine) : m_maxLine(maxLine) {}

QList<QByteArray> LineSplitter::feed(const QByteArray& bytes)
{
    QList<QByteArray> lines;
    qsizetype start = 0;
    while (start < bytes.size()) {
        const qsizetype newline = bytes.indexOf('\n', start);
        if (newline < 0) {
            if (!m_skipping)
                m_pending += bytes.mid(start);
            if (m_pending.size() > m_maxLine) {
                m_pending.clear();
                m_skipping = true;
            }
            break;
        }
        if (!m_skipping) {
            QByteArray line = m_pending + bytes.mid(start, newline - start);
            if (line.endsWith('\r'))
                line.chop(1);
            if (line.size() <= m_maxLine)
                lines << std::move(line);
        }
        m_pending.clear();
        m_skipping = false;
        start = newline + 1;
    }
    return lines;
}

void LineSplitter::clear()
{
    m_pending.clear();
    m_skipping = false;
}

bool MetricHistory::add(const TrainingMetric& metric)
{
    const auto key = orderKey(metric);
    bool rewound = false;
    const auto dropFrom = [&](QVector<TrainingMetric>& list) {
        const auto it =
            std::find_if(list.begin(), list.end(), [&](const TrainingMetric& m) { return orderKey(m) >= key; });
        if (it != list.end()) {
            list.erase(it, list.end());
            rewound = true;
        }
    };
    dropFrom(m_train);
    dropFrom(m_val);
    (metric.isTrain() ? m_train : m_val).push_back(metric);
    return rewound;
}

void MetricHistory::clear()
{
    m_train.clear();
    m_val.clear();
}

qint64 MetricHistory::lastStep() const
{
    qint64 step = 0;
    if (!m_train.isEmpty())
        step = m_train.last().step;
    if (!m_val.isEmpty())
        step = std::max(step, m_val.last().step);
    return step;
}

qint64 MetricHistory::totalSteps() const
{
    const TrainingMetric* newest = nullptr;
    for (const auto* m : {latestTrain(), latestVal()})
        if (m && (!newest || orderKey(*m) > orderKey(*newest)))
            newest = m;
    return newest ? newest->totalSteps : 0;
}

int MetricHistory::lastEpoch() const
{
    int epoch = -1;
    if (!m_train.isEmpty())
        epoch = m_train.last().epoch;
    if (!m_val.isEmpty())
        epoch = std::max(epoch, m_val.last().epoch);
    return epoch;
}

double MetricHistory::bestTop1() const
{
    double best = -1;
    for (const auto& m : m_val) {
        const auto top1 = m.emaTop1 ? m.emaTop1 : m.top1;
        if (top1)
            best = std::max(best, *top1);
    }
    return best;
}

double MetricHistory::etaSeconds() const
{
    if (m_train.size() < 2)
        return -1;
    const auto& last = m_train.last();
    // Walk back over lines of the same process (elapsed_s restarts when a run resumes).
    int first = m_train.size() - 1;
    while (first > 0 && m_train.size() - first < 200 && m_train[first - 1].elapsedS < m_train[first].elapsedS)
        --first;
    const auto& from = m_train[first];
    const double seconds = last.elapsedS - from.elapsedS;
    const qint64 steps = last.step - from.step;
    if (steps <= 0 || seconds <= 0 || last.totalSteps <= 0)
        return -1;
    return std::max<qint64>(0, last.totalSteps - last.step) * seconds / static_cast<double>(steps);
}

MetricsFileTail::MetricsFileTail(QString path) : m_path(std::move(path)) {}

void MetricsFileTail::setPath(const QString& path)
{
    m_path = path;
    reset();
}

void MetricsFileTail::reset()
{
    m_offset = 0;
    m_identity = 0;
    m_lines.clear();
}

MetricsFileTail::Update MetricsFileTail::poll()
{
    Update update;
    QFile file(m_path);
    if (m_path.isEmpty() || !file.open(QIODevice::ReadOnly))
        return update;
    const quint64 identity = fileIdentity(file);
    if ((m_identity != 0 && identity != m_identity) || file.size() < m_offset) {
        m_offset = 0;
        m_lines.clear();
        update.restarted = true;
    }
    m_identity = identity;
    if (file.size() == m_offset || !file.seek(m_offset))
        return update;
    const QByteArray bytes = file.read(file.size() - m_offset);
    m_offset += bytes.size();
    for (const auto& line : m_lines.feed(bytes)) {
        QString why;
        if (auto m = parseMetricLine(line, &why)) {
            update.metrics << *m;
        } else if (!line.trimmed().isEmpty()) {
            ++update.rejected;
            update.lastRejection = why;
        }
    }
    return update;
}

}  // namespace fec::ui
