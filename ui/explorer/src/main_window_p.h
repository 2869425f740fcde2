#pragma once

// The main window's private state, shared by the files that implement it: main_window.cpp
// (layout, results into views), main_window_actions.cpp (menus and actions),
// main_window_open.cpp (opening files) and main_window_status.cpp (the status bar).

#include <functional>
#include <memory>

#include <QElapsedTimer>
#include <QIcon>
#include <QList>
#include <QPair>
#include <QSettings>
#include <QString>
#include <QVariant>

#include "fec/ui/explain_controller.h"
#include "fec/ui/main_window.h"
#include "fec/ui/preferences_dialog.h"

class QDockWidget;
class QLabel;
class QMenu;
class QStackedWidget;
class QTabWidget;

namespace fec::ui {

class ErrorPresenter;
class ImageView;
class ModelSession;
class WelcomePage;

inline constexpr int kMaxRecent = 10;
inline const char* const kRecentCheckpoints = "recent/checkpoints";
inline const char* const kRecentFolders = "recent/folders";

/// An icon of the explorer's resources (":/fec-explorer/icons/NAME.svg").
QIcon explorerIcon(const QString& name);

struct MainWindow::Private {
    MainWindow* q = nullptr;
    MainWindowOptions options;
    std::unique_ptr<QSettings> settings;
    QString tempSettingsFile;
    Preferences prefs;
    int overrideSize = -1;
    bool hasPreprocessOverride = false;
    QString overridePreprocess;
    QString overrideDevice;

    ExplainController* controller = nullptr;
    ErrorPresenter* errors = nullptr;
    SelectionModel* selection = nullptr;

    QStackedWidget* stack = nullptr;
    WelcomePage* welcome = nullptr;
    QTabWidget* tabs = nullptr;
    PyramidPanel* pyramid = nullptr;
    ComparePanel* compare = nullptr;
    HierarchyPanel* hierarchy = nullptr;
    HeadsView* heads = nullptr;
    StatisticsView* stats = nullptr;
    EvidenceView* evidence = nullptr;
    ConceptsView* concepts = nullptr;
    QWidget* view3dHost = nullptr;
    Pyramid3DView* view3d = nullptr;

    ImageGallery* gallery = nullptr;
    LineagePanel* lineage = nullptr;
    PredictionPanel* prediction = nullptr;
    ModelInfoPanel* info = nullptr;
    TrainingPanel* training = nullptr;
    QDockWidget* trainingDock = nullptr;
    QList<QDockWidget*> docks;

    QWidget* busyBox = nullptr;
    QLabel* busyLabel = nullptr;
    QLabel* deviceLabel = nullptr;
    QLabel* timingLabel = nullptr;
    QLabel* imageLabel = nullptr;
    QLabel* hoverLabel = nullptr;
    QLabel* messageLabel = nullptr;
    int messageGeneration = 0;

    QMenu* recentCheckpointsMenu = nullptr;
    QMenu* recentFoldersMenu = nullptr;
    QMenu* sizeMenu = nullptr;
    QMenu* deviceMenu = nullptr;
    QMenu* threadsMenu = nullptr;
    QMenu* preprocessMenu = nullptr;
    QMenu* weightsMenu = nullptr;
    QMenu* themeMenu = nullptr;
    QList<QAction*> viewActions;
    QAction* closeComparisonAction = nullptr;

    // A segment of the Concepts view waiting for its image's result (openSegment).
    QString pendingImage;
    int pendingLevel = 0;
    int pendingSegment = -1;

    QElapsedTimer updateTimer;
    bool timing = false;
    double lastUpdateMs = 0;

    // --- construction (main_window.cpp) ---------------------------------------------------
    void buildCentral();
    void buildDocks();
    void sizeDocks();
    bool docksSized = false;
    void connectController();

    // --- menus and actions (main_window_actions.cpp) ----------------------------------------
    void buildMenus();
    void rebuildRecentMenus();
    void rebuildModelMenus();
    QMenu* choiceMenu(QMenu* menu, const QList<QPair<QString, QVariant>>& choices, const QVariant& current,
                      std::function<void(const QVariant&)> onChoose);
    QStringList deviceChoices() const;
    void editPreferences();

    // --- opening files (main_window_open.cpp) ----------------------------------------------
    /// The file dialogs of File ▸ Open and of the welcome page.
    void chooseImages();
    void chooseFolder();
    void chooseCheckpoint();
    void chooseComparisonCheckpoint();
    /// File ▸ Open Concept Atlas… and Build Concept Atlas…: the Concepts view's dialogs.
    void chooseAtlas();
    void buildAtlas();
    /// Puts `path` first in the recent list under `key` (kRecentCheckpoints, kRecentFolders).
    void addRecent(const char* key, const QString& path);

    // --- status bar (main_window_status.cpp) ----------------------------------------------
    void buildStatusBar();
    /// A transient message (QStatusBar::showMessage would hide the busy indicator).
    void flash(const QString& text, int ms);
    void updateBusy();
    void updateStatus();

    // --- behaviour (main_window.cpp) --------------------------------------------------------
    int effectiveSize() const { return overrideSize >= 0 ? overrideSize : prefs.size; }
    QString effectivePreprocess() const { return hasPreprocessOverride ? overridePreprocess : prefs.preprocess; }
    QString effectiveDevice() const { return !overrideDevice.isEmpty() ? overrideDevice : prefs.device; }
    /// Hands the preferences with this session's overrides to the controller.
    void syncSettings();
    const ModelSession* primary() const { return controller->session(ModelRole::Primary); }
    const ModelSession* secondary() const { return controller->session(ModelRole::Comparison); }
    void savePrefs();
    void requestRun();
    void reloadModels();
    void onResult();
    void onSecondaryResult(const ExplainResultPtr& r);
    void onFailed(const ExplainFailure& failure);
    void retryOnCpu(const ExplainFailure& failure);
    /// The controller's key for a tab: its index (MainWindow::View).
    int viewKey(QWidget* tab) const;
    void applyToTab(QWidget* tab);
    void ensure3D();
    void finishUpdate();
    void updateCentralPage();
    void reportError(const QString& title, const QString& message, bool dialog);
    void clearError();
    ImageView* activeImageView() const;
    /// Selects the pending segment when the result shown is its image's.
    void selectPendingSegment();
    /// The Concepts view builds with a copy of the current model (so that explaining goes on).
    void updateConceptsModel();
};

}  // namespace fec::ui
