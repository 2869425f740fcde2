#pragma once

// The explorer's main window: tabs with the pyramid, compare, hierarchy, heads, 3D, statistics,
// evidence and concepts views; docks with the gallery, lineage, prediction and model facts; menus, drag and drop,
// settings, a busy indicator with Cancel, and the automation used by --screenshot and the tests.

#include <memory>

#include <QImage>
#include <QList>
#include <QMainWindow>
#include <QStringList>

class QAction;

namespace fec::ui {

struct ExplainResult;
using ExplainResultPtr = std::shared_ptr<const ExplainResult>;

class ComparePanel;
class ConceptsView;
class EvidenceView;
class HeadsView;
class HierarchyPanel;
class ImageGallery;
class LineagePanel;
class ModelInfoPanel;
class PredictionPanel;
class Pyramid3DView;
class PyramidPanel;
class SelectionModel;
class StatisticsView;
class TrainingPanel;

struct MainWindowOptions {
    /// Read and write QSettings (recent files, window state, preferences). Off: a private,
    /// temporary settings file, so automation and tests do not depend on the user's choices.
    bool useSettings = true;
    /// Errors open dialogs. Off: they are only reported (status bar, errorOccurred, stderr).
    bool interactive = true;
    /// Load the shipped default model (models/*.pth.tar) and samples when no checkpoint is given.
    bool loadDefaults = true;
};

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum class View { Pyramid, Compare, Hierarchy, Heads, ThreeD, Statistics, Evidence, Concepts };

    explicit MainWindow(QWidget* parent = nullptr);
    explicit MainWindow(const MainWindowOptions& options, QWidget* parent = nullptr);
    ~MainWindow() override;

    /// "pyramid", "compare", "hierarchy", "heads", "3d", "statistics", "evidence", "concepts".
    static bool viewFromName(const QString& name, View* view);

    /// Loads a checkpoint in the background (replaces the current model).
    void openCheckpoint(const QString& path);
    /// Loads a second checkpoint whose results appear in the Compare view.
    void openComparisonCheckpoint(const QString& path);
    /// Files become the gallery (the first is shown); a single folder is opened as a folder.
    void openImages(const QStringList& paths);
    void openFolder(const QString& folder);
    /// Shows an image of the gallery (or any file) and runs the model on it.
    void setCurrentImage(const QString& path);
    QString currentImage() const;
    /// Opens a concept atlas folder in the Concepts view (checked against the current model;
    /// another model's atlas is refused with both hashes named).
    void openAtlas(const QString& dir);
    /// Shows `imagePath` in the Pyramid view at `level` with raw cluster `segment` of that level
    /// selected once its result arrives (what a segment of the Concepts view opens).
    void openSegment(const QString& imagePath, int level, int segment);

    void showView(View view);
    View currentView() const;
    /// For this session only (the command line): input side (0 = checkpoint), "squash"/"crop"/"",
    /// "auto"/"cpu"/"cuda".
    void setSessionOverrides(int size, const QString& preprocess, const QString& device);
    void setLevel(int level);
    void setK(int k);

    bool isModelLoaded() const;
    /// Loading, running, or a result not yet shown.
    bool isBusy() const;
    /// A result for the current image is shown and every visible view has drawn it.
    bool isViewUpToDate() const;
    /// Nothing left to do: no load or run in flight, and the views show the latest state.
    bool isSettled() const;
    /// The last error reported (empty when none since the last successful action).
    QString lastError() const;
    /// What the window offers to do about the last error (out of memory: "Retry on CPU", "Retry at
    /// 160 × 160"; object names retryOnCpu, retrySmaller): buttons in the status bar and, when
    /// interactive, in the error dialog. Triggering one does it. Empty when nothing is offered.
    QList<QAction*> errorActions() const;
    /// The device models are loaded on: "auto", "cpu" or "cuda:N" (preference or session override).
    QString requestedDevice() const;

    /// The whole window as on screen, OpenGL content included.
    QImage grabWindowImage();
    /// What "current view" exports and copies.
    QImage currentViewImage();

    ExplainResultPtr currentResult() const;
    ExplainResultPtr secondaryResult() const;
    /// Milliseconds from choosing the image (or another change) to every visible view updated.
    double lastUpdateMs() const;

    SelectionModel* selectionModel() const;
    PyramidPanel* pyramidPanel() const;
    ComparePanel* comparePanel() const;
    HierarchyPanel* hierarchyPanel() const;
    LineagePanel* lineagePanel() const;
    PredictionPanel* predictionPanel() const;
    ModelInfoPanel* modelInfoPanel() const;
    ImageGallery* gallery() const;
    HeadsView* headsView() const;
    StatisticsView* statisticsView() const;
    EvidenceView* evidenceView() const;
    ConceptsView* conceptsView() const;
    /// The class the Evidence view explains, by name or index (--class); the top-1 class when empty.
    void setEvidenceClass(const QString& name);
    /// Created when the 3D tab is first shown (nullptr before, and on platforms without OpenGL).
    Pyramid3DView* pyramid3DView() const;
    /// The Training dock's panel (fec train runs, live charts, probes into this window).
    TrainingPanel* trainingPanel() const;
    /// Shows and raises the Training dock.
    void showTraining();

Q_SIGNALS:
    /// Every visible view shows the latest result.
    void resultShown();
    void modelLoaded();
    void errorOccurred(const QString& message);

protected:
    void closeEvent(QCloseEvent* event) override;
    void showEvent(QShowEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
