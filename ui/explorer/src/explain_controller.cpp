#include "fec/ui/explain_controller.h"

#include "fec/checkpoint.h"
#include "fec/runtime.h"
#include "fec/ui/model_bundle.h"
#include "fec/ui/model_session.h"

namespace fec::ui {

ExplainController::ExplainController(QObject* parent)
    : QObject(parent), m_primary(new ModelSession(this)), m_comparison(new ModelSession(this))
{
    qRegisterMetaType<fec::ui::ExplainFailure>();
    qRegisterMetaType<fec::ui::ModelRole>();
    connectSession(m_primary, ModelRole::Primary);
    connectSession(m_comparison, ModelRole::Comparison);
    connect(m_primary, &ModelSession::started, this,
            [this](quint64, const QString& imagePath) { Q_EMIT runStarted(imagePath); });
}

ExplainController::~ExplainController()
{
    // The sessions (children) retire their workers on the way out and say so: not to us any more.
    disconnect(m_primary, nullptr, this, nullptr);
    disconnect(m_comparison, nullptr, this, nullptr);
}

void ExplainController::connectSession(ModelSession* session, ModelRole role)
{
    connect(session, &ModelSession::loadingChanged, this, &ExplainController::touch);
    connect(session, &ModelSession::busyChanged, this, &ExplainController::touch);
    connect(session, &ModelSession::loaded, this, [this, role] { onLoaded(role); });
    connect(session, &ModelSession::loadFailed, this,
            [this, role](const QString& path, const QString& message, bool outOfMemory) {
                ExplainFailure failure;
                failure.model = role;
                failure.loading = true;
                failure.checkpoint = path;
                failure.message = message;
                failure.outOfMemory = outOfMemory;
                addRetryOffers(failure);
                Q_EMIT loadFailed(failure);
            });
    connect(session, &ModelSession::resultReady, this,
            [this, role](const ExplainResultPtr& result) { onResult(role, result); });
    connect(session, &ModelSession::failed, this,
            [this, role](quint64, const QString& message, bool outOfMemory) { onFailed(role, message, outOfMemory); });
}

ModelSession* ExplainController::sessionFor(ModelRole role) const
{
    return role == ModelRole::Primary ? m_primary : m_comparison;
}

const ModelSession* ExplainController::session(ModelRole role) const
{
    return sessionFor(role);
}

bool ExplainController::isModelLoaded(ModelRole role) const
{
    return sessionFor(role)->isLoaded();
}

void ExplainController::setSettings(const ExplainSettings& settings)
{
    const bool threadsChanged = settings.threads != m_settings.threads;
    m_settings = settings;
    if (threadsChanged) {
        m_primary->setThreadCount(settings.threads);
        m_comparison->setThreadCount(settings.threads);
    }
}

void ExplainController::load(ModelRole role, const QString& checkpoint)
{
    ModelLoadOptions options;
    options.path = checkpoint;
    options.weights = m_settings.weights;
    options.device = m_settings.device;
    options.threads = m_settings.threads;
    sessionFor(role)->load(options);
    touch();
}

void ExplainController::reload()
{
    for (const ModelRole role : {ModelRole::Primary, ModelRole::Comparison}) {
        const ModelSession* s = sessionFor(role);
        if (s->isLoaded() || s->isLoading())
            load(role, s->options().path);
    }
    touch();
}

void ExplainController::closeComparison()
{
    m_comparison->unload();
    m_comparisonResult.reset();
    m_comparisonPending = false;
    touch();
}

void ExplainController::setImage(const QString& path)
{
    m_image = path;
}

bool ExplainController::run()
{
    if (!m_primary->isLoaded() || m_image.isEmpty()) {
        touch();
        return false;
    }
    ExplainRequest request;
    request.imagePath = m_image;
    request.size = m_settings.size;
    request.preprocess = m_settings.preprocess;
    Q_EMIT runRequested(m_image);
    m_resultPending = true;
    m_failed = false;
    m_primary->explain(request);
    if (m_comparison->isLoaded()) {
        m_comparisonPending = true;
        m_comparison->explain(request);
    }
    touch();
    return true;
}

bool ExplainController::explain(const QString& imagePath)
{
    setImage(imagePath);
    return run();
}

void ExplainController::cancel()
{
    m_primary->cancelLoad();
    m_comparison->cancelLoad();
    m_primary->cancel();
    m_comparison->cancel();
    m_resultPending = m_comparisonPending = false;
    touch();
}

bool ExplainController::isLoading() const
{
    return m_primary->isLoading() || m_comparison->isLoading();
}

bool ExplainController::isBusy() const
{
    return isLoading() || m_resultPending || m_comparisonPending || m_primary->isBusy() || m_comparison->isBusy();
}

void ExplainController::addView(int view, bool showsComparison)
{
    if (!m_views.contains(view))
        m_views << view;
    if (showsComparison)
        m_comparisonViews.insert(view);
}

void ExplainController::setShownView(int view)
{
    m_shownView = view;
}

void ExplainController::onLoaded(ModelRole role)
{
    // The window shows what was loaded first; then the current image runs under the new model.
    Q_EMIT modelLoaded(role);
    run();
}

void ExplainController::onResult(ModelRole role, const ExplainResultPtr& result)
{
    if (role == ModelRole::Comparison) {
        m_comparisonPending = false;
        m_comparisonResult = result;
        for (const int view : std::as_const(m_comparisonViews))
            if (view != m_shownView || m_stale.contains(view))
                m_stale.insert(view);
        Q_EMIT comparisonResultReady(result);
        touch();
        return;
    }
    m_resultPending = false;
    m_failed = false;
    m_result = result;
    m_stale = QSet<int>(m_views.begin(), m_views.end());
    Q_EMIT resultReady(result);
    touch();
}

void ExplainController::onFailed(ModelRole role, const QString& message, bool outOfMemory)
{
    ExplainFailure failure;
    failure.model = role;
    failure.checkpoint = sessionFor(role)->options().path;
    failure.image = m_image;
    failure.message = message;
    failure.outOfMemory = outOfMemory;
    addRetryOffers(failure);
    if (role == ModelRole::Comparison) {
        m_comparisonPending = false;
        m_comparisonResult.reset();
    } else {
        m_resultPending = false;
        m_failed = true;
        // Showing the previous image's clusters under a failed one would mislead.
        m_result.reset();
        m_stale = QSet<int>(m_views.begin(), m_views.end());
    }
    Q_EMIT failed(failure);
    touch();
}

void ExplainController::addRetryOffers(ExplainFailure& failure) const
{
    if (!failure.outOfMemory)
        return;
    // The CPU is worth offering when the failure happened on a GPU: the model was on one, or CUDA's
    // allocator said so ("CUDA out of memory. Tried to allocate ..."), and the CPU is not chosen already.
    const ModelSession* s = sessionFor(failure.model);
    const auto bundle = s->bundle();
    const bool onGpu = (bundle && !bundle->device.is_cpu()) || failure.message.contains(QLatin1String("CUDA")) ||
                       (failure.loading && s->options().device != QLatin1String("cpu") && fec::cudaAvailable());
    failure.retryOnCpu = onGpu && m_settings.device != QLatin1String("cpu");
    if (failure.loading)
        return;  // loading has no input size to shrink
    // Activation memory grows with the number of pixels: about half of them should fit.
    const auto& summary = m_primary->summary();
    const int current = m_settings.size > 0
                            ? m_settings.size
                            : (summary.storedInputSize > 0 ? summary.storedInputSize : kDefaultInputSize);
    for (int size : inputSizeChoices(summary.sizeMultiple > 0 ? summary.sizeMultiple : 32))
        if (size * 4 <= current * 3)
            failure.retrySize = size;
}

void ExplainController::touch()
{
    const bool busy = isBusy();
    if (busy != m_busy) {
        m_busy = busy;
        Q_EMIT busyChanged(busy);
    }
    Q_EMIT activityChanged();
}

}  // namespace fec::ui
