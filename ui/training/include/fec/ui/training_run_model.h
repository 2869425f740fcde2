#pragma once

// The training runs the panel lists: one row per run with its status, progress and latest
// metrics. The model owns the runs; rows update as their runs report.

#include <QAbstractTableModel>
#include <QList>

namespace fec::ui {

class TrainingRun;

class TrainingRunModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Status, Epoch, Step, Loss, Top1, Top5, Speed, Eta, Message, ColumnCount };

    explicit TrainingRunModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    /// Appends a run (the model becomes its parent); returns its row.
    int addRun(TrainingRun* run);
    /// Removes and deletes a run; refused (false) while its process is attached and active.
    bool removeRun(int row);
    TrainingRun* run(int row) const;
    int rowOf(const TrainingRun* run) const;
    /// The run whose folder is `dir` (compared canonically), or nullptr.
    TrainingRun* findByDir(const QString& dir) const;
    int runCount() const { return m_runs.size(); }
    const QList<TrainingRun*>& runs() const { return m_runs; }
    QStringList dirs() const;

private:
    void runChanged(TrainingRun* run);

    QList<TrainingRun*> m_runs;
};

}  // namespace fec::ui
