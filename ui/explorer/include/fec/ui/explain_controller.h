#pragma once

// Explaining the current image, without widgets: the primary and the comparison model sessions,
// the requests sent to them (image, input size, preprocessing; the latest wins), their results
// and failures, which result views have not drawn the latest results, the busy state, and what a
// retry could change after running out of memory. The window connects its views to the signals;
// the tests drive it alone.

#include <QList>
#include <QObject>
#include <QSet>
#include <QString>

#include "fec/ui/explain_failure.h"
// ExplainResultPtr travels in signals: its metatype declaration must precede moc's use of it.
#include "fec/ui/explain_result.h"

namespace fec::ui {

class ModelSession;

/// How checkpoints are loaded and images run: the window's preferences with its session overrides.
struct ExplainSettings {
    int size = 0;                              ///< model input side; 0: stored in the checkpoint
    QString preprocess;                        ///< "squash", "crop"; empty: stored in the checkpoint
    QString device = QStringLiteral("auto");   ///< "auto", "cpu", "cuda", "cuda:N"
    QString weights = QStringLiteral("auto");  ///< "auto", "state_dict", "ema"
    int threads = 0;                           ///< CPU threads; 0: one per core
};

class ExplainController : public QObject {
    Q_OBJECT
public:
    explicit ExplainController(QObject* parent = nullptr);
    /// The sessions cancel their requests and wait for their worker threads.
    ~ExplainController() override;

    /// Used by later loads and runs; CPU threads apply to the loaded models at once.
    void setSettings(const ExplainSettings& settings);
    const ExplainSettings& settings() const { return m_settings; }

    /// Loads a checkpoint in the background (replaces that role's model). When it is loaded,
    /// modelLoaded is emitted and the current image runs again.
    void load(ModelRole role, const QString& checkpoint);
    /// Loads the loaded (or loading) checkpoints again with the current settings.
    void reload();
    /// Drops the comparison model and its result.
    void closeComparison();
    const ModelSession* session(ModelRole role) const;
    bool isModelLoaded(ModelRole role = ModelRole::Primary) const;

    /// The image the next run explains (nothing runs yet).
    void setImage(const QString& path);
    QString image() const { return m_image; }
    /// Sends the current image to every loaded model; a newer request supersedes an unfinished one,
    /// whose result is never delivered. False (nothing sent) without a primary model or an image.
    bool run();
    /// setImage() and run().
    bool explain(const QString& imagePath);
    /// Stops loading and running: nothing of what was under way arrives.
    void cancel();

    /// The primary model's result for the current image (nullptr before one, and after a failure).
    ExplainResultPtr result() const { return m_result; }
    ExplainResultPtr comparisonResult() const { return m_comparisonResult; }
    /// The primary (comparison) result of the latest request has not arrived yet.
    bool isResultPending() const { return m_resultPending; }
    bool isComparisonPending() const { return m_comparisonPending; }
    /// The latest request of the primary model failed.
    bool hasFailed() const { return m_failed; }
    bool isLoading() const;
    /// Loading, running, or a requested result not yet delivered.
    bool isBusy() const;

    /// Result views, under keys of the caller's choosing. A primary result or failure makes every
    /// view stale; a comparison result makes the views that show it stale, except the shown one
    /// when it is up to date (it takes the comparison result at once).
    void addView(int view, bool showsComparison = false);
    void setShownView(int view);
    bool isStale(int view) const { return m_stale.contains(view); }
    /// The view drew the latest results.
    void markDrawn(int view) { m_stale.remove(view); }
    void markStale(int view) { m_stale.insert(view); }

Q_SIGNALS:
    void modelLoaded(fec::ui::ModelRole role);
    /// Loading a checkpoint failed (`failure.loading`); the model loaded before, if any, stays.
    void loadFailed(const fec::ui::ExplainFailure& failure);
    /// A request is about to be sent for `imagePath`.
    void runRequested(const QString& imagePath);
    /// The primary model's worker began running `imagePath`.
    void runStarted(const QString& imagePath);
    /// The primary result of the latest request (the views are stale now).
    void resultReady(fec::ui::ExplainResultPtr result);
    /// The comparison result of the latest request (see addView for the views it makes stale).
    void comparisonResultReady(fec::ui::ExplainResultPtr result);
    /// The latest request failed for `failure.model`; a primary failure also clears the result.
    void failed(const fec::ui::ExplainFailure& failure);
    void busyChanged(bool busy);
    /// Loading or running began, ended or moved on (what a busy indicator says may change).
    void activityChanged();

private:
    ModelSession* sessionFor(ModelRole role) const;
    void connectSession(ModelSession* session, ModelRole role);
    void onLoaded(ModelRole role);
    void onResult(ModelRole role, const ExplainResultPtr& result);
    void onFailed(ModelRole role, const QString& message, bool outOfMemory);
    void addRetryOffers(ExplainFailure& failure) const;
    /// Emits activityChanged, and busyChanged when the busy state changed.
    void touch();

    ModelSession* m_primary = nullptr;
    ModelSession* m_comparison = nullptr;
    ExplainSettings m_settings;
    QString m_image;
    ExplainResultPtr m_result;
    ExplainResultPtr m_comparisonResult;
    bool m_resultPending = false;
    bool m_comparisonPending = false;
    bool m_failed = false;
    bool m_busy = false;
    QList<int> m_views;
    QSet<int> m_comparisonViews;
    QSet<int> m_stale;
    int m_shownView = -1;
};

}  // namespace fec::ui
