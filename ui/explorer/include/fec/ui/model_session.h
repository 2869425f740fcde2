#pragma once

// One loaded model as the window sees it: loading off the GUI thread (QtConcurrent), then an
// InferenceWorker on its own QThread. Results of superseded requests never reach the window.

#include <functional>
#include <memory>

#include <QList>
#include <QObject>
#include <QPointer>
#include <QThread>

#include "fec/ui/model_bundle.h"
#include "fec/ui/explain_request.h"
#include "fec/ui/explain_result.h"
#include "fec/ui/model_summary.h"

namespace fec::ui {

class InferenceWorker;

class ModelSession : public QObject {
    Q_OBJECT
public:
    explicit ModelSession(QObject* parent = nullptr);
    /// Cancels the running request and waits for the worker thread.
    ~ModelSession() override;

    /// Starts loading in the background; a later load() supersedes an unfinished one.
    void load(const ModelLoadOptions& options);
    /// Forgets an unfinished load (the file is still read to the end in the background).
    void cancelLoad();
    /// Drops the model (pending requests are cancelled).
    void unload();

    bool isLoading() const { return m_loading; }
    bool isLoaded() const { return m_worker != nullptr; }
    bool isBusy() const;
    const ModelSummary& summary() const { return m_summary; }
    /// Options of the loaded model (or of the load in progress).
    const ModelLoadOptions& options() const { return m_options; }
    std::shared_ptr<const ModelBundle> bundle() const { return m_bundle; }

    /// Queues a run (latest wins); returns its id, 0 when no model is loaded.
    quint64 explain(ExplainRequest request);
    /// Cancels the pending and the running request.
    void cancel();
    /// Runs `task` on the worker's thread, after the run in progress (the model is never used by
    /// two threads at once). False (nothing queued) when no model is loaded. `task` must catch
    /// what it throws.
    bool runOnModel(std::function<void(const ModelBundle&)> task) const;
    /// CPU threads for the next runs; 0 = one per core.
    void setThreadCount(int threads);
    int threadCount() const { return m_threads; }
    quint64 latestRequest() const { return m_latest; }

    /// Test-only: called in the loading thread before every load; what it throws is reported like
    /// a failed load. Set while no load runs; nullptr (the application's value) turns it off.
    using LoadFaultForTesting = std::function<void(const ModelLoadOptions&)>;
    static void setLoadFaultForTesting(LoadFaultForTesting fault);

Q_SIGNALS:
    void loadingChanged(bool loading);
    void loaded();
    /// The load of `path` failed; `message` is readable (it names the file). `outOfMemory`: the
    /// device ran out of memory (cached device memory has been released; the CPU may do).
    void loadFailed(const QString& path, const QString& message, bool outOfMemory);
    void unloaded();
    void resultReady(fec::ui::ExplainResultPtr result);
    /// A run failed; `outOfMemory` as for InferenceWorker::failed.
    void failed(quint64 requestId, const QString& message, bool outOfMemory);
    void busyChanged(bool busy);
    void started(quint64 requestId, const QString& imagePath);

private:
    struct LoadOutcome {
        std::shared_ptr<ModelBundle> bundle;
        QString error;
        bool outOfMemory = false;
    };
    void finishLoad(quint64 generation, const LoadOutcome& outcome);
    void retireWorker();

    InferenceWorker* m_worker = nullptr;
    QThread* m_thread = nullptr;
    QList<QPointer<QThread>> m_retiring;
    std::shared_ptr<const ModelBundle> m_bundle;
    ModelSummary m_summary;
    ModelLoadOptions m_options;
    quint64 m_generation = 0;
    quint64 m_nextId = 1;
    quint64 m_latest = 0;
    int m_threads = 0;
    bool m_loading = false;
};

}  // namespace fec::ui
