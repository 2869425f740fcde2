#pragma once

// One long-lived worker per loaded model, living on its own QThread: the latest request wins,
// superseded results are dropped, every failure arrives as a signal.

#include <atomic>
#include <functional>
#include <memory>

#include <QMutex>
#include <QObject>

#include "fec/ui/explain_request.h"
#include "fec/ui/explain_result.h"

namespace fec::ui {

struct ModelBundle;

class InferenceWorker : public QObject {
    Q_OBJECT
public:
    /// The worker runs `model` (already on its device). Move it to its thread after construction.
    explicit InferenceWorker(std::shared_ptr<const ModelBundle> model, QObject* parent = nullptr);
    ~InferenceWorker() override;

    /// Thread-safe (call from the GUI thread). Replaces any pending request and interrupts the
    /// running one at its next stage boundary. Returns the request id (assigned when 0).
    quint64 requestExplain(ExplainRequest request);
    /// Thread-safe. Drops the pending request and interrupts the running one; nothing is emitted
    /// for either.
    void cancel();
    /// Thread-safe. CPU threads used by the next runs (applied inside the worker thread).
    void setThreadCount(int threads);
    /// True while a request is pending or running.
    bool isBusy() const { return m_busy.load(); }
    std::shared_ptr<const ModelBundle> model() const { return m_model; }

    /// Test-only: called on the worker thread before every run; what it throws is reported like a
    /// failure of the run (e.g. a c10::Error "CUDA out of memory" on a machine without a GPU). Set
    /// while no run is in flight; nullptr (the application's value) turns it off.
    using FaultForTesting = std::function<void(const ExplainRequest&)>;
    static void setFaultForTesting(FaultForTesting fault);

Q_SIGNALS:
    void resultReady(fec::ui::ExplainResultPtr result);
    /// `outOfMemory`: the device (or the host) ran out of memory; cached device memory has been
    /// released, so a retry on the CPU or at a smaller input size can succeed.
    void failed(quint64 requestId, const QString& message, bool outOfMemory);
    void busyChanged(bool busy);
    /// A run began (for progress text).
    void started(quint64 requestId, const QString& imagePath);

private:
    void processPending();

    std::shared_ptr<const ModelBundle> m_model;
    QMutex m_mutex;
    ExplainRequest m_pending;
    bool m_hasPending = false;
    bool m_scheduled = false;
    quint64 m_nextId = 1;
    std::atomic<bool> m_cancel{false};
    std::atomic<bool> m_busy{false};
    std::atomic<int> m_threads{0};
    int m_appliedThreads = -1;
};

}  // namespace fec::ui
