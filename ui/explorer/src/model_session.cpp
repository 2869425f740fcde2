#include "fec/ui/model_session.h"

#include <c10/util/Exception.h>

#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>

#include "fec/runtime.h"
#include "fec/ui/inference_worker.h"

namespace fec::ui {

namespace {

ModelSession::LoadFaultForTesting& loadFaultForTesting()
{
    static ModelSession::LoadFaultForTesting fault;
    return fault;
}

}  // namespace

void ModelSession::setLoadFaultForTesting(LoadFaultForTesting fault)
{
    loadFaultForTesting() = std::move(fault);
}

ModelSession::ModelSession(QObject* parent) : QObject(parent)
{
    qRegisterMetaType<fec::ui::ExplainResultPtr>();
}

ModelSession::~ModelSession()
{
    retireWorker();
    for (const auto& thread : std::as_const(m_retiring))
        if (thread)
            thread->wait();
}

void ModelSession::load(const ModelLoadOptions& options)
{
    const quint64 generation = ++m_generation;
    m_options = options;
    if (!m_loading) {
        m_loading = true;
        Q_EMIT loadingChanged(true);
    }
    auto* watcher = new QFutureWatcher<LoadOutcome>(this);
    connect(watcher, &QFutureWatcher<LoadOutcome>::finished, this, [this, watcher, generation] {
        watcher->deleteLater();
        finishLoad(generation, watcher->result());
    });
    watcher->setFuture(QtConcurrent::run([options, fault = loadFaultForTesting()] {
        LoadOutcome outcome;
        try {
            if (fault)
                fault(options);
            outcome.bundle = loadModelBundle(options);
        } catch (const c10::Error& e) {
            outcome.error = QString::fromStdString(e.what_without_backtrace());
            outcome.outOfMemory = fec::isOutOfMemory(e);
        } catch (const std::exception& e) {
            outcome.error = QString::fromStdString(e.what());
            outcome.outOfMemory = fec::isOutOfMemory(e);
        } catch (...) {
            outcome.error = options.path + QStringLiteral(": unknown error while loading the checkpoint");
        }
        if (!outcome.bundle) {
            // Weights already copied to the device before the failure went with the bundle; give
            // back what the allocator kept of them.
            try {
                fec::releaseCachedDeviceMemory();
            } catch (...) {
            }
        }
        return outcome;
    }));
}

void ModelSession::cancelLoad()
{
    if (!m_loading)
        return;
    ++m_generation;
    m_loading = false;
    Q_EMIT loadingChanged(false);
}

void ModelSession::finishLoad(quint64 generation, const LoadOutcome& outcome)
{
    if (generation != m_generation)
        return;  // superseded or cancelled
    m_loading = false;
    if (!outcome.bundle) {
        Q_EMIT loadingChanged(false);
        Q_EMIT loadFailed(m_options.path, outcome.error, outcome.outOfMemory);
        return;
    }
    retireWorker();
    m_bundle = outcome.bundle;
    m_summary = outcome.bundle->summary;
    if (outcome.bundle->device.is_cpu()) {
        const int threads = m_threads > 0 ? m_threads : fec::defaultThreadCount();
        m_summary.device = QStringLiteral("cpu (%1 thread%2)").arg(threads).arg(threads == 1 ? "" : "s");
    }
    m_thread = new QThread(this);
    m_thread->setObjectName(QStringLiteral("inference"));
    m_worker = new InferenceWorker(m_bundle);
    m_worker->setThreadCount(m_threads);
    m_worker->moveToThread(m_thread);
    connect(m_worker, &InferenceWorker::resultReady, this, [this](const ExplainResultPtr& result) {
        if (result && result->requestId == m_latest)
            Q_EMIT resultReady(result);
    });
    connect(m_worker, &InferenceWorker::failed, this, [this](quint64 id, const QString& message, bool outOfMemory) {
        if (id == m_latest)
            Q_EMIT failed(id, message, outOfMemory);
    });
    connect(m_worker, &InferenceWorker::busyChanged, this, &ModelSession::busyChanged);
    connect(m_worker, &InferenceWorker::started, this, &ModelSession::started);
    m_thread->start();
    Q_EMIT loadingChanged(false);
    Q_EMIT loaded();
}

void ModelSession::retireWorker()
{
    if (!m_worker)
        return;
    // The thread finishes its current stage in the background; nothing it emits reaches us.
    m_worker->cancel();
    disconnect(m_worker, nullptr, this, nullptr);
    connect(m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    m_thread->quit();
    m_retiring.removeAll(QPointer<QThread>());
    m_retiring.append(m_thread);
    m_worker = nullptr;
    m_thread = nullptr;
    m_bundle.reset();
    Q_EMIT busyChanged(false);
}

void ModelSession::unload()
{
    cancelLoad();
    if (!m_worker)
        return;
    retireWorker();
    m_summary = ModelSummary();
    Q_EMIT unloaded();
}

bool ModelSession::isBusy() const
{
    return m_worker && m_worker->isBusy();
}

quint64 ModelSession::explain(ExplainRequest request)
{
    if (!m_worker)
        return 0;
    request.requestId = m_nextId++;
    m_latest = request.requestId;
    m_worker->requestExplain(request);
    return m_latest;
}

bool ModelSession::runOnModel(std::function<void(const ModelBundle&)> task) const
{
    if (!m_worker || !m_bundle)
        return false;
    QMetaObject::invokeMethod(
        m_worker, [bundle = m_bundle, task = std::move(task)] { task(*bundle); }, Qt::QueuedConnection);
    return true;
}

void ModelSession::cancel()
{
    if (m_worker)
        m_worker->cancel();
    m_latest = 0;  // whatever is still on its way is stale
}

void ModelSession::setThreadCount(int threads)
{
    m_threads = threads;
    if (m_worker)
        m_worker->setThreadCount(threads);
    if (m_bundle && m_bundle->device.is_cpu()) {
        const int n = threads > 0 ? threads : fec::defaultThreadCount();
        m_summary.device = QStringLiteral("cpu (%1 thread%2)").arg(n).arg(n == 1 ? "" : "s");
    }
}

}  // namespace fec::ui
