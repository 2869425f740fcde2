#include "fec/ui/training_run_model.h"

#include <cmath>

#include <QBrush>
#include <QColor>
#include <QDir>
#include <QFileInfo>

#include "fec/ui/training_run.h"

namespace fec::ui {

namespace {

QString duration(double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8)
        return {};
    const auto s = static_cast<qint64>(std::llround(seconds));
    if (s >= 3600)
        return QStringLiteral("%1:%2:%3")
            .arg(s / 3600)
            .arg((s / 60) % 60, 2, 10, QLatin1Char('0'))
            .arg(s % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0'));
}

QString percent(const std::optional<double>& v)
{
    return v ? QStringLiteral("%1%").arg(*v, 0, 'f', 2) : QString();
}

QColor statusColor(RunStatus status)
{
    switch (status) {
    case RunStatus::Running:
    case RunStatus::Starting:
        return QColor(0, 114, 178);  // Okabe-Ito blue
    case RunStatus::Stopping:
    case RunStatus::Stopped:
        return QColor(230, 159, 0);  // orange
    case RunStatus::Finished:
        return QColor(0, 158, 115);  // bluish green
    case RunStatus::Failed:
        return QColor(213, 94, 0);  // vermillion
    case RunStatus::New:
        break;
    }
    return {};
}

}  // namespace

TrainingRunModel::TrainingRunModel(QObject* parent) : QAbstractTableModel(parent) {}

int TrainingRunModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : m_runs.size();
}

int TrainingRunModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant TrainingRunModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return {};
    switch (section) {
    case Name:
        return tr("Run");
    case Status:
        return tr("Status");
    case Epoch:
        return tr("Epoch");
    case Step:
        return tr("Step");
    case Loss:
        return tr("Loss");
    case Top1:
        return tr("Val top-1");
    case Top5:
        return tr("Val top-5");
    case Speed:
        return tr("Images/s");
    case Eta:
        return tr("ETA");
    case Message:
        return tr("Message");
    }
    return {};
}

QVariant TrainingRunModel::data(const QModelIndex& index, int role) const
{
    if (!index.isValid() || index.row() >= m_runs.size())
        return {};
    const TrainingRun* r = m_runs[index.row()];
    const auto& h = r->history();
    const auto* train = h.latestTrain();
    const auto* val = h.latestVal();
    if (role == Qt::ToolTipRole) {
        if (index.column() == Name)
            return QDir::toNativeSeparators(r->dir());
        if (index.column() == Message || index.column() == Status) {
            QString tip = r->message();
            if (r->status() == RunStatus::Failed && !r->logTail().isEmpty())
                tip += QStringLiteral("\n\n") +
                       r->logTail().mid(std::max<qsizetype>(0, r->logTail().size() - 8)).join(QLatin1Char('\n'));
            return tip;
        }
        return {};
    }
    if (role == Qt::ForegroundRole && index.column() == Status) {
        const QColor c = statusColor(r->status());
        return c.isValid() ? QVariant(QBrush(c)) : QVariant();
    }
    if (role == Qt::TextAlignmentRole && index.column() != Name && index.column() != Status &&
        index.column() != Message)
        return QVariant(Qt::AlignRight | Qt::AlignVCenter);
    if (role != Qt::DisplayRole)
        return {};
    switch (index.column()) {
    case Name:
        return r->name();
    case Status: {
        QString s = runStatusName(r->status());
        if (r->status() == RunStatus::Failed && r->exitCode() > 0)
            s += QStringLiteral(" (%1)").arg(r->exitCode());
        else if (r->isActive() && !r->isAttached())
            s += tr(" (outside)");
        return s;
    }
    case Epoch: {
        const int epoch = h.lastEpoch();
        if (epoch < 0)
            return {};
        return r->totalEpochs() > 0 ? QStringLiteral("%1/%2").arg(epoch + 1).arg(r->totalEpochs())
                                    : QString::number(epoch + 1);
    }
    case Step: {
        if (h.isEmpty())
            return {};
        const qint64 total = r->totalSteps();
        return total > 0 ? QStringLiteral("%1/%2").arg(h.lastStep()).arg(total) : QString::number(h.lastStep());
    }
    case Loss:
        return train ? QString::number(train->loss, 'f', 4) : QString();
    case Top1:
        return val ? percent(val->top1) : QString();
    case Top5:
        return val ? percent(val->top5) : QString();
    case Speed:
        return train && train->imagesPerSecond > 0 ? QString::number(train->imagesPerSecond, 'f', 1) : QString();
    case Eta:
        return r->isActive() ? duration(h.etaSeconds()) : QString();
    case Message:
        return r->message();
    }
    return {};
}

int TrainingRunModel::addRun(TrainingRun* run)
{
    const int row = m_runs.size();
    beginInsertRows({}, row, row);
    run->setParent(this);
    m_runs << run;
    endInsertRows();
    connect(run, &TrainingRun::changed, this, [this, run] { runChanged(run); });
    return row;
}

bool TrainingRunModel::removeRun(int row)
{
    if (row < 0 || row >= m_runs.size())
        return false;
    TrainingRun* r = m_runs[row];
    if (r->isActive() && r->isAttached())
        return false;
    beginRemoveRows({}, row, row);
    m_runs.removeAt(row);
    endRemoveRows();
    delete r;
    return true;
}

TrainingRun* TrainingRunModel::run(int row) const
{
    return row >= 0 && row < m_runs.size() ? m_runs[row] : nullptr;
}

int TrainingRunModel::rowOf(const TrainingRun* run) const
{
    return m_runs.indexOf(const_cast<TrainingRun*>(run));
}

TrainingRun* TrainingRunModel::findByDir(const QString& dir) const
{
    const QFileInfo wanted(dir);
    const QString canonical = wanted.canonicalFilePath();
    for (auto* r : m_runs) {
        const QFileInfo have(r->dir());
        if ((!canonical.isEmpty() && have.canonicalFilePath() == canonical) ||
            have.absoluteFilePath() == wanted.absoluteFilePath())
            return r;
    }
    return nullptr;
}

QStringList TrainingRunModel::dirs() const
{
    QStringList list;
    for (auto* r : m_runs)
        list << r->dir();
    return list;
}

void TrainingRunModel::runChanged(TrainingRun* run)
{
    const int row = rowOf(run);
    if (row >= 0)
        Q_EMIT dataChanged(index(row, 0), index(row, ColumnCount - 1));
}

}  // namespace fec::ui
