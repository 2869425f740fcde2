#include "fec/ui/inference_worker.h"

#include <c10/util/Exception.h>

#include <QMetaObject>
#include <QMutexLocker>

#include "fec/runtime.h"
#include "fec/ui/model_bundle.h"

namespace fec::ui {

namespace {

InferenceWorker::FaultForTesting& faultForTesting()
{
    static InferenceWorker::FaultForTesting fault;
    return fault;
}

}  // namespace

void InferenceWorker::setFaultForTesting(FaultForTesting fault)
{
    faultForTesting() = std::move(fault);
}

InferenceWorker::InferenceWorker(std::shared_ptr<const ModelBundle> model, QObject* parent)
    : QObject(parent), m_model(std::move(model))
{
    qRegisterMetaType<fec::ui::ExplainResultPtr>();
    qRegisterMetaType<fec::ui::ExplainRequest>();
}

InferenceWorker::~InferenceWorker()
{
    // The session retires a worker with deleteLater on its finished thread, so this runs there,
    // usually holding the last reference to the model: hand its device memory back to the driver.
    m_model.reset();
    try {
        fec::releaseCachedDeviceMemory();
    } catch (...) {
        // A broken CUDA context must not turn closing a model into a crash.
    }
}

quint64 InferenceWorker::requestExplain(ExplainRequest request)
{
    QMutexLocker lock(&m_mutex);
    if (request.requestId == 0)
        request.requestId = m_nextId++;
    else
        m_nextId = std::max(m_nextId, request.requestId + 1);
    m_pending = request;
    m_hasPending = true;
    m_cancel = true;  // the running request (if any) is superseded
    m_busy = true;
    if (!m_scheduled) {
        m_scheduled = true;
        QMetaObject::invokeMethod(this, &InferenceWorker::processPending, Qt::QueuedConnection);
    }
    return request.requestId;
}

void InferenceWorker::cancel()
{
    QMutexLocker lock(&m_mutex);
    m_hasPending = false;
    m_cancel = true;
}

void InferenceWorker::setThreadCount(int threads)
{
    m_threads = threads;
}

void InferenceWorker::processPending()
{
    // busyChanged is emitted from this thread only, so receivers see true/false in order.
    Q_EMIT busyChanged(true);
    for (;;) {
        ExplainRequest request;
        {
            QMutexLocker lock(&m_mutex);
            if (!m_hasPending) {
                m_scheduled = false;
                m_busy = false;
                lock.unlock();
                Q_EMIT busyChanged(false);
                return;
            }
            request = m_pending;
            m_hasPending = false;
            m_cancel = false;
        }
        Q_EMIT started(request.requestId, request.imagePath);
        ExplainResultPtr result;
        QString error;
        bool outOfMemory = false;
        // Nothing may escape into the event loop: a CUDA error here would take the window down.
        try {
            // OpenMP thread counts are per thread: apply the user's choice here, not on the GUI thread.
            const int threads = m_threads.load();
            if (threads != m_appliedThreads) {
                fec::setThreadCount(threads);
                m_appliedThreads = threads;
            }
            if (const auto& fault = faultForTesting())
                fault(request);
            result = runExplain(*m_model, request, &m_cancel);
        } catch (const ExplainCancelled&) {
            continue;
        } catch (const c10::Error& e) {
            error = QString::fromStdString(e.what_without_backtrace());
            outOfMemory = fec::isOutOfMemory(e);
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
            outOfMemory = fec::isOutOfMemory(e);
        } catch (...) {
            error = request.imagePath + QStringLiteral(": unknown error while explaining the image");
        }
        if (outOfMemory) {
            // The failed run's tensors are gone; what the allocator kept of them would make a retry fail too.
            try {
                fec::releaseCachedDeviceMemory();
            } catch (...) {
            }
        }
        {
            // A newer request or a cancel() since the start makes this result stale.
            QMutexLocker lock(&m_mutex);
            if (m_hasPending || m_cancel.load())
                continue;
        }
        if (result)
            Q_EMIT resultReady(result);
        else
            Q_EMIT failed(request.requestId, error, outOfMemory);
    }
}

}  // namespace fec::ui
