#include "fec/ui/main_window.h"

#include <thread>

#include <torch/cuda.h>

#include <QAbstractButton>
#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDesktopServices>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QHash>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QOpenGLWidget>
#include <QPointer>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QToolBar>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>

#include "fec/cli/cli.h"
#include "fec/runtime.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/explain_pipeline.h"
#include "fec/ui/export_dialog.h"
#include "fec/ui/heads_view.h"
#include "fec/ui/hierarchy_panel.h"
#include "fec/ui/image_gallery.h"
#include "fec/ui/image_view.h"
#include "fec/ui/lineage_panel.h"
#include "fec/ui/model_info_panel.h"
#include "fec/ui/model_session.h"
#include "fec/ui/prediction_panel.h"
#include "fec/ui/preferences_dialog.h"
#include "fec/ui/pyramid3d_view.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/statistics_view.h"
#include "fec/ui/theme.h"
#include "fec/ui/training_panel.h"

// Resources of a static library are registered explicitly, outside any namespace.
static void initExplorerResources()
{
    Q_INIT_RESOURCE(explorer);
}

namespace fec::ui {

namespace {

constexpr int kMaxRecent = 10;
const char* const kRecentCheckpoints = "recent/checkpoints";
const char* const kRecentFolders = "recent/folders";

bool isCheckpointFile(const QString& path)
{
    const QString name = QFileInfo(path).fileName().toLower();
    return name.endsWith(QLatin1String(".pth")) || name.endsWith(QLatin1String(".pt")) ||
           name.endsWith(QLatin1String(".tar")) || name.endsWith(QLatin1String(".ckpt"));
}

QIcon icon(const QString& name)
{
    return QIcon(QStringLiteral(":/fec-explorer/icons/%1.svg").arg(name));
}

// The shipped default model (the same one `fec` uses without --checkpoint).
QString findDefaultModel()
{
    return QString::fromStdString(cli::defaultModelPath());
}

QString samplesFolder()
{
    const QString dir = QDir(QString::fromStdString(cli::resourceDir())).filePath(QStringLiteral("samples"));
    return QDir(dir).exists() && !QDir(dir).entryList(QDir::Files).isEmpty() ? dir : QString();
}

}  // namespace

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

    ModelSession* primary = nullptr;
    ModelSession* secondary = nullptr;
    SelectionModel* selection = nullptr;

    QStackedWidget* stack = nullptr;
    QWidget* welcome = nullptr;
    QLabel* welcomeText = nullptr;
    QWidget* welcomeRecent = nullptr;
    QTabWidget* tabs = nullptr;
    PyramidPanel* pyramid = nullptr;
    ComparePanel* compare = nullptr;
    HierarchyPanel* hierarchy = nullptr;
    HeadsView* heads = nullptr;
    StatisticsView* stats = nullptr;
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
    QLabel* errorLabel = nullptr;
    /// Buttons for what the window offers to do about the last error (errorActions).
    QWidget* errorActionsBox = nullptr;
    QList<QAction*> errorActions;
    QLabel* messageLabel = nullptr;
    int messageGeneration = 0;
    /// A transient message in the status bar (QStatusBar::showMessage would hide the busy indicator).
    void flash(const QString& text, int ms)
    {
        messageLabel->setText(text);
        const int generation = ++messageGeneration;
        QTimer::singleShot(ms, messageLabel, [this, generation] {
            if (generation == messageGeneration)
                messageLabel->clear();
        });
    }

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

    QString currentImage;
    ExplainResultPtr result;
    ExplainResultPtr secondaryResult;
    QSet<QWidget*> staleTabs;
    bool resultPending = false;
    bool secondaryPending = false;
    bool currentFailed = false;
    QElapsedTimer updateTimer;
    bool timing = false;
    double lastUpdateMs = 0;
    QString lastError;

    // --- construction ---------------------------------------------------------------------
    void buildCentral();
    void buildWelcome();
    void buildDocks();
    void sizeDocks();
    bool docksSized = false;
    void buildStatusBar();
    void buildMenus();
    void rebuildRecentMenus();
    void rebuildWelcomeRecent();
    void rebuildModelMenus();
    QMenu* choiceMenu(QMenu* menu, const QList<QPair<QString, QVariant>>& choices, const QVariant& current,
                      std::function<void(const QVariant&)> onChoose);

    // --- behaviour ------------------------------------------------------------------------
    int effectiveSize() const { return overrideSize >= 0 ? overrideSize : prefs.size; }
    QString effectivePreprocess() const { return hasPreprocessOverride ? overridePreprocess : prefs.preprocess; }
    QString effectiveDevice() const { return !overrideDevice.isEmpty() ? overrideDevice : prefs.device; }
    ModelLoadOptions loadOptions(const QString& path) const
    {
        ModelLoadOptions o;
        o.path = path;
        o.weights = prefs.weights;
        o.device = effectiveDevice();
        o.threads = prefs.threads;
        return o;
    }
    void savePrefs();
    void addRecent(const char* key, const QString& path);
    void requestRun();
    void onResult(const ExplainResultPtr& r);
    void onSecondaryResult(const ExplainResultPtr& r);
    void onFailed(const QString& message, bool secondaryModel, bool outOfMemory);
    void onLoadFailed(ModelSession* session, const QString& path, const QString& message, bool outOfMemory);
    QList<QAction*> outOfMemoryActions(ModelSession* session, const QString& message, bool loading);
    void setErrorActions(const QList<QAction*>& actions);
    /// The engine's message and what to do about it ("… retry on the CPU or at a smaller input size.").
    QString withOutOfMemoryAdvice(const QString& message, const QList<QAction*>& actions) const;
    void applyToTab(QWidget* tab);
    void ensure3D();
    void finishUpdate();
    void updateBusy();
    void updateStatus();
    void updateCentralPage();
    /// `actions`: offered with the error (buttons in the status bar and the dialog); the window owns them.
    void reportError(const QString& title, const QString& message, bool dialog, const QList<QAction*>& actions = {});
    void clearError();
    void reloadModels();
    ImageView* activeImageView() const;
    QStringList deviceChoices() const;
};

MainWindow::MainWindow(QWidget* parent) : MainWindow(MainWindowOptions(), parent) {}

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent) : QMainWindow(parent), d(new Private)
{
    initExplorerResources();
    d->q = this;
    d->options = options;
    if (options.useSettings) {
        d->settings = std::make_unique<QSettings>();
    } else {
        d->tempSettingsFile =
            QDir::temp().filePath(QStringLiteral("fec-explorer-%1-%2.ini").arg(QCoreApplication::applicationPid()).arg(quintptr(this)));
        QFile::remove(d->tempSettingsFile);
        d->settings = std::make_unique<QSettings>(d->tempSettingsFile, QSettings::IniFormat);
    }
    d->prefs = Preferences::load(*d->settings);
    applyTheme(themeFromString(d->prefs.theme));

    setWindowTitle(tr("FEC Explorer"));
    setWindowIcon(icon(QStringLiteral("fec-explorer")));
    setAcceptDrops(true);
    setDockNestingEnabled(true);

    d->selection = new SelectionModel(this);
    d->primary = new ModelSession(this);
    d->secondary = new ModelSession(this);
    d->primary->setThreadCount(d->prefs.threads);
    d->secondary->setThreadCount(d->prefs.threads);

    d->buildCentral();
    d->buildDocks();
    d->buildStatusBar();
    d->buildMenus();

    connect(d->primary, &ModelSession::loadingChanged, this, [this] { d->updateBusy(); });
    connect(d->primary, &ModelSession::busyChanged, this, [this] { d->updateBusy(); });
    connect(d->primary, &ModelSession::loaded, this, [this] {
        const auto& s = d->primary->summary();
        d->addRecent(kRecentCheckpoints, s.path);
        d->info->setSummary(s);
        d->rebuildModelMenus();
        d->clearError();
        d->updateCentralPage();
        d->updateStatus();
        d->flash(tr("Loaded %1 (%2, %3)").arg(s.fileName, s.variant, s.device), 5000);
        d->requestRun();
        Q_EMIT modelLoaded();
    });
    connect(d->primary, &ModelSession::loadFailed, this,
            [this](const QString& path, const QString& message, bool outOfMemory) {
                if (!d->primary->isLoaded())
                    d->info->setMessage(tr("No model loaded."));
                d->updateCentralPage();
                d->onLoadFailed(d->primary, path, message, outOfMemory);
            });
    connect(d->primary, &ModelSession::resultReady, this, [this](const ExplainResultPtr& r) { d->onResult(r); });
    connect(d->primary, &ModelSession::failed, this,
            [this](quint64, const QString& m, bool outOfMemory) { d->onFailed(m, false, outOfMemory); });
    connect(d->primary, &ModelSession::started, this, [this](quint64, const QString& path) {
        d->busyLabel->setText(tr("Running %1 on %2…").arg(d->primary->summary().fileName, QFileInfo(path).fileName()));
    });

    connect(d->secondary, &ModelSession::loadingChanged, this, [this] { d->updateBusy(); });
    connect(d->secondary, &ModelSession::busyChanged, this, [this] { d->updateBusy(); });
    connect(d->secondary, &ModelSession::loaded, this, [this] {
        d->info->setSecondarySummary(d->secondary->summary());
        d->closeComparisonAction->setEnabled(true);
        d->flash(tr("Comparison model %1 loaded").arg(d->secondary->summary().fileName), 5000);
        d->requestRun();
        showView(View::Compare);
    });
    connect(d->secondary, &ModelSession::loadFailed, this,
            [this](const QString& path, const QString& message, bool outOfMemory) {
                d->onLoadFailed(d->secondary, path, message, outOfMemory);
            });
    connect(d->secondary, &ModelSession::resultReady, this, [this](const ExplainResultPtr& r) { d->onSecondaryResult(r); });
    connect(d->secondary, &ModelSession::failed, this,
            [this](quint64, const QString& m, bool outOfMemory) { d->onFailed(m, true, outOfMemory); });

    connect(d->gallery, &ImageGallery::currentImageChanged, this, &MainWindow::setCurrentImage);
    connect(d->lineage, &LineagePanel::summaryChanged, this, [this](const QString& s) { d->hoverLabel->setText(s); });

    if (options.useSettings) {
        restoreGeometry(d->settings->value(QStringLiteral("window/geometry")).toByteArray());
        restoreState(d->settings->value(QStringLiteral("window/state")).toByteArray());
    }
    if (!d->settings->contains(QStringLiteral("window/geometry")))
        resize(1400, 900);
    d->updateCentralPage();
    d->updateBusy();
    d->updateStatus();

    if (options.loadDefaults) {
        // Deferred so that the caller can still give a checkpoint or images (they win).
        QTimer::singleShot(0, this, [this] {
            if (!d->primary->isLoaded() && !d->primary->isLoading()) {
                const QString model = findDefaultModel();
                if (!model.isEmpty())
                    openCheckpoint(model);
            }
            if (d->gallery->model()->count() == 0) {
                const QString samples = samplesFolder();
                if (!samples.isEmpty()) {
                    d->gallery->setFolder(samples);
                    if (d->gallery->model()->count() > 0)
                        setCurrentImage(d->gallery->model()->path(0));
                }
            }
        });
    }
}

MainWindow::~MainWindow()
{
    // ~QWidget deletes the children after d is gone, and a child may still signal on its way
    // out (a model session announces it is no longer busy): cut every connection from the
    // children into this window first, so that none reaches a freed d (ASan found it).
    for (QObject* child : findChildren<QObject*>())
        disconnect(child, nullptr, this, nullptr);
    // Sessions wait for their threads in their destructors; the views go first.
    if (!d->tempSettingsFile.isEmpty()) {
        d->settings.reset();
        QFile::remove(d->tempSettingsFile);
    }
}

// --- construction ----------------------------------------------------------------------------

void MainWindow::Private::buildCentral()
{
    stack = new QStackedWidget(q);
    buildWelcome();
    stack->addWidget(welcome);

    tabs = new QTabWidget(stack);
    tabs->setDocumentMode(true);
    pyramid = new PyramidPanel(selection, tabs);
    compare = new ComparePanel(selection, tabs);
    hierarchy = new HierarchyPanel(selection, tabs);
    heads = new HeadsView(tabs);
    view3dHost = new QWidget(tabs);
    auto* hostLayout = new QVBoxLayout(view3dHost);
    hostLayout->setContentsMargins(0, 0, 0, 0);
    stats = new StatisticsView(tabs);
    tabs->addTab(pyramid, tr("Pyramid"));
    tabs->addTab(compare, tr("Compare"));
    tabs->addTab(hierarchy, tr("Hierarchy"));
    tabs->addTab(heads, tr("Heads"));
    tabs->addTab(view3dHost, tr("3D"));
    tabs->addTab(stats, tr("Statistics"));
    tabs->setTabToolTip(0, tr("The image with one level of the segment pyramid, or a K-means merge"));
    tabs->setTabToolTip(1, tr("Levels, encoding heads, K-means merges and a second checkpoint side by side"));
    tabs->setTabToolTip(2, tr("The linked hierarchy of segments as a tree"));
    tabs->setTabToolTip(3, tr("Every head of an encoding block and their agreement"));
    tabs->setTabToolTip(4, tr("The pyramid as stacked planes with parent links (drag to rotate)"));
    tabs->setTabToolTip(5, tr("Segment sizes, assignment margins, empty clusters and head agreement"));
    stack->addWidget(tabs);
    q->setCentralWidget(stack);

    QObject::connect(tabs, &QTabWidget::currentChanged, q, [this](int index) {
        QWidget* w = tabs->widget(index);
        if (w == view3dHost)
            ensure3D();
        if (staleTabs.contains(w))
            applyToTab(w);
        if (index >= 0 && index < viewActions.size())
            viewActions[index]->setChecked(true);
    });
}

void MainWindow::Private::buildWelcome()
{
    welcome = new QWidget(q);
    auto* outer = new QVBoxLayout(welcome);
    outer->addStretch(2);
    auto* column = new QWidget(welcome);
    // A fixed width lets the word-wrapped text get the height it needs.
    column->setFixedWidth(600);
    auto* layout = new QVBoxLayout(column);
    auto* logo = new QLabel(column);
    logo->setPixmap(icon(QStringLiteral("fec-explorer")).pixmap(72, 72));
    layout->addWidget(logo, 0, Qt::AlignHCenter);
    auto* title = new QLabel(tr("FEC Explorer"), column);
    QFont f = title->font();
    f.setPointSizeF(f.pointSizeF() * 2.0);
    f.setBold(true);
    title->setFont(f);
    layout->addWidget(title, 0, Qt::AlignHCenter);
    welcomeText = new QLabel(column);
    welcomeText->setWordWrap(true);
    welcomeText->setAlignment(Qt::AlignHCenter);
    welcomeText->setTextFormat(Qt::RichText);
    layout->addWidget(welcomeText);
    auto* buttons = new QHBoxLayout;
    buttons->addStretch(1);
    auto* openModel = new QPushButton(icon(QStringLiteral("open-checkpoint")), tr("Open a checkpoint…"), column);
    openModel->setDefault(true);
    openModel->setMinimumHeight(34);
    auto* openImage = new QPushButton(icon(QStringLiteral("open-image")), tr("Open images…"), column);
    auto* openFolder = new QPushButton(icon(QStringLiteral("open-folder")), tr("Open a folder…"), column);
    for (auto* b : {openModel, openImage, openFolder}) {
        b->setMinimumHeight(34);
        buttons->addWidget(b);
    }
    buttons->addStretch(1);
    layout->addLayout(buttons);
    QObject::connect(openModel, &QPushButton::clicked, q, [this] {
        const QString path = QFileDialog::getOpenFileName(q, tr("Open checkpoint"), settings->value("dialogs/checkpointDir").toString(),
                                                          tr("Checkpoints (*.pth *.pth.tar *.tar *.pt *.ckpt);;All files (*)"));
        if (!path.isEmpty()) {
            settings->setValue("dialogs/checkpointDir", QFileInfo(path).absolutePath());
            q->openCheckpoint(path);
        }
    });
    QObject::connect(openImage, &QPushButton::clicked, q, [this] {
        const QStringList paths = QFileDialog::getOpenFileNames(
            q, tr("Open images"), settings->value("dialogs/imageDir").toString(),
            tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.ppm *.pgm *.gif);;All files (*)"));
        if (!paths.isEmpty()) {
            settings->setValue("dialogs/imageDir", QFileInfo(paths.first()).absolutePath());
            q->openImages(paths);
        }
    });
    QObject::connect(openFolder, &QPushButton::clicked, q, [this] {
        const QString dir = QFileDialog::getExistingDirectory(q, tr("Open folder"), settings->value("dialogs/imageDir").toString());
        if (!dir.isEmpty())
            q->openFolder(dir);
    });
    welcomeRecent = new QWidget(column);
    new QVBoxLayout(welcomeRecent);
    welcomeRecent->layout()->setContentsMargins(0, 12, 0, 0);
    layout->addWidget(welcomeRecent);
    auto* hint = new QLabel(tr("Tip: drop checkpoints (.pth, .pth.tar, .pt), images or folders anywhere in this window."), column);
    hint->setForegroundRole(QPalette::PlaceholderText);
    hint->setAlignment(Qt::AlignHCenter);
    hint->setWordWrap(true);
    layout->addSpacing(12);
    layout->addWidget(hint);
    outer->addWidget(column, 0, Qt::AlignHCenter);
    outer->addStretch(3);
}

void MainWindow::Private::buildDocks()
{
    auto addDock = [this](const QString& title, const QString& name, QWidget* widget, Qt::DockWidgetArea area) {
        auto* dock = new QDockWidget(title, q);
        dock->setObjectName(name);
        dock->setWidget(widget);
        dock->setFeatures(QDockWidget::DockWidgetClosable | QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
        q->addDockWidget(area, dock);
        docks << dock;
        return dock;
    };
    gallery = new ImageGallery(q);
    addDock(tr("Images"), QStringLiteral("galleryDock"), gallery, Qt::LeftDockWidgetArea);
    prediction = new PredictionPanel(q);
    auto* predictionDock = addDock(tr("Prediction"), QStringLiteral("predictionDock"), prediction, Qt::RightDockWidgetArea);
    lineage = new LineagePanel(selection, q);
    auto* lineageDock = addDock(tr("Lineage"), QStringLiteral("lineageDock"), lineage, Qt::RightDockWidgetArea);
    info = new ModelInfoPanel(q);
    auto* infoDock = addDock(tr("Model"), QStringLiteral("modelDock"), info, Qt::RightDockWidgetArea);
    q->splitDockWidget(predictionDock, lineageDock, Qt::Vertical);
    q->splitDockWidget(lineageDock, infoDock, Qt::Vertical);
    // Training runs (fec train child processes); hidden until asked for (Model > Training…).
    training = new TrainingPanel(settings.get(), q);
    training->setInteractive(options.interactive);
    trainingDock = addDock(tr("Training"), QStringLiteral("trainingDock"), training, Qt::BottomDockWidgetArea);
    trainingDock->hide();
    QObject::connect(training, &TrainingPanel::openCheckpointRequested, q, &MainWindow::openCheckpoint);
}

void MainWindow::Private::sizeDocks()
{
    // Docks get sensible sizes once the window has its geometry (unless a saved state did it).
    if (docksSized)
        return;
    docksSized = true;
    if (settings->contains(QStringLiteral("window/state")))
        return;
    const int w = q->width();
    q->resizeDocks({docks[0]}, {std::clamp(w * 16 / 100, 150, 240)}, Qt::Horizontal);
    q->resizeDocks({docks[1]}, {std::clamp(w * 27 / 100, 250, 400)}, Qt::Horizontal);
    q->resizeDocks({docks[1], docks[2], docks[3]}, {170, 250, 330}, Qt::Vertical);
}

void MainWindow::Private::buildStatusBar()
{
    auto* bar = q->statusBar();
    busyBox = new QWidget(bar);
    auto* busyLayout = new QHBoxLayout(busyBox);
    busyLayout->setContentsMargins(0, 0, 0, 0);
    auto* spinner = new QProgressBar(busyBox);
    spinner->setRange(0, 0);
    spinner->setFixedWidth(70);
    spinner->setMaximumHeight(14);
    spinner->setTextVisible(false);
    busyLabel = new QLabel(busyBox);
    auto* cancel = new QToolButton(busyBox);
    cancel->setText(tr("Cancel"));
    cancel->setToolTip(tr("Stop loading or running the model"));
    QObject::connect(cancel, &QToolButton::clicked, q, [this] {
        primary->cancelLoad();
        secondary->cancelLoad();
        primary->cancel();
        secondary->cancel();
        resultPending = secondaryPending = false;
        timing = false;
        flash(tr("Cancelled"), 3000);
        updateBusy();
        updateCentralPage();
    });
    busyLayout->addWidget(spinner);
    busyLayout->addWidget(busyLabel);
    busyLayout->addWidget(cancel);
    bar->addWidget(busyBox);
    messageLabel = new QLabel(bar);
    bar->addWidget(messageLabel);
    errorLabel = new QLabel(bar);
    errorLabel->setStyleSheet(QStringLiteral("color: #d55e00;"));
    errorLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    bar->addWidget(errorLabel, 1);
    errorActionsBox = new QWidget(bar);
    auto* errorActionsLayout = new QHBoxLayout(errorActionsBox);
    errorActionsLayout->setContentsMargins(0, 0, 0, 0);
    errorActionsBox->hide();
    bar->addWidget(errorActionsBox);
    hoverLabel = new QLabel(bar);
    hoverLabel->setMinimumWidth(120);
    bar->addWidget(hoverLabel, 2);
    imageLabel = new QLabel(bar);
    timingLabel = new QLabel(bar);
    deviceLabel = new QLabel(bar);
    hoverLabel->setToolTip(tr("Pixel under the mouse and its cluster at every level"));
    imageLabel->setToolTip(tr("Image size and model input"));
    timingLabel->setToolTip(tr("Traced forward + analysis, and the time until every visible view was updated"));
    deviceLabel->setToolTip(tr("Compute device (Model ▸ Device)"));
    for (auto* l : {imageLabel, timingLabel, deviceLabel})
        bar->addPermanentWidget(l);
}

QMenu* MainWindow::Private::choiceMenu(QMenu* menu, const QList<QPair<QString, QVariant>>& choices, const QVariant& current,
                                       std::function<void(const QVariant&)> onChoose)
{
    menu->clear();
    auto* group = new QActionGroup(menu);
    group->setExclusive(true);
    for (const auto& [label, value] : choices) {
        auto* a = menu->addAction(label);
        a->setCheckable(true);
        a->setChecked(value == current);
        group->addAction(a);
        const QVariant v = value;
        QObject::connect(a, &QAction::triggered, q, [onChoose, v] { onChoose(v); });
    }
    return menu;
}

void MainWindow::Private::buildMenus()
{
    auto* file = q->menuBar()->addMenu(tr("&File"));
    auto* toolbar = q->addToolBar(tr("Main"));
    toolbar->setObjectName(QStringLiteral("mainToolBar"));
    toolbar->setIconSize(QSize(20, 20));
    toolbar->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);

    auto* openImages = file->addAction(icon(QStringLiteral("open-image")), tr("Open &Images…"));
    openImages->setShortcut(QKeySequence::Open);
    QObject::connect(openImages, &QAction::triggered, q, [this] {
        const QStringList paths = QFileDialog::getOpenFileNames(
            q, tr("Open images"), settings->value("dialogs/imageDir").toString(),
            tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.ppm *.pgm *.gif);;All files (*)"));
        if (!paths.isEmpty()) {
            settings->setValue("dialogs/imageDir", QFileInfo(paths.first()).absolutePath());
            q->openImages(paths);
        }
    });
    auto* openFolder = file->addAction(icon(QStringLiteral("open-folder")), tr("Open &Folder…"));
    openFolder->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    QObject::connect(openFolder, &QAction::triggered, q, [this] {
        const QString dir = QFileDialog::getExistingDirectory(q, tr("Open folder"), settings->value("dialogs/imageDir").toString());
        if (!dir.isEmpty())
            q->openFolder(dir);
    });
    auto* openModel = file->addAction(icon(QStringLiteral("open-checkpoint")), tr("Open &Checkpoint…"));
    openModel->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_L));
    QObject::connect(openModel, &QAction::triggered, q, [this] {
        const QString path = QFileDialog::getOpenFileName(q, tr("Open checkpoint"), settings->value("dialogs/checkpointDir").toString(),
                                                          tr("Checkpoints (*.pth *.pth.tar *.tar *.pt *.ckpt);;All files (*)"));
        if (!path.isEmpty()) {
            settings->setValue("dialogs/checkpointDir", QFileInfo(path).absolutePath());
            q->openCheckpoint(path);
        }
    });
    auto* openSecond = file->addAction(tr("Open C&omparison Checkpoint…"));
    openSecond->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_L));
    QObject::connect(openSecond, &QAction::triggered, q, [this] {
        const QString path = QFileDialog::getOpenFileName(q, tr("Open comparison checkpoint"),
                                                          settings->value("dialogs/checkpointDir").toString(),
                                                          tr("Checkpoints (*.pth *.pth.tar *.tar *.pt *.ckpt);;All files (*)"));
        if (!path.isEmpty())
            q->openComparisonCheckpoint(path);
    });
    closeComparisonAction = file->addAction(tr("Close Comparison Checkpoint"));
    closeComparisonAction->setEnabled(false);
    QObject::connect(closeComparisonAction, &QAction::triggered, q, [this] {
        secondary->unload();
        secondaryResult.reset();
        secondaryPending = false;
        compare->setSecondaryResult(nullptr);
        info->setSecondarySummary(ModelSummary());
        closeComparisonAction->setEnabled(false);
        updateBusy();
    });
    recentCheckpointsMenu = file->addMenu(tr("Recent Check&points"));
    recentFoldersMenu = file->addMenu(tr("Recent Fol&ders"));
    file->addSeparator();
    auto* next = file->addAction(tr("&Next Image"));
    next->setShortcut(QKeySequence(Qt::ALT | Qt::Key_Right));
    QObject::connect(next, &QAction::triggered, q, [this] { gallery->step(1); });
    auto* previous = file->addAction(tr("P&revious Image"));
    previous->setShortcut(QKeySequence(Qt::ALT | Qt::Key_Left));
    QObject::connect(previous, &QAction::triggered, q, [this] { gallery->step(-1); });
    file->addSeparator();
    auto* exportAction = file->addAction(icon(QStringLiteral("export")), tr("&Export…"));
    exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    QObject::connect(exportAction, &QAction::triggered, q, [this] {
        if (!result) {
            reportError(tr("Nothing to export"), tr("Open a checkpoint and an image first."), options.interactive);
            return;
        }
        ExportDialog dialog(result, q->currentViewImage(), q);
        dialog.exec();
    });
    auto* copy = file->addAction(icon(QStringLiteral("copy")), tr("&Copy View to Clipboard"));
    copy->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C), QKeySequence::Copy});
    copy->setShortcutContext(Qt::WindowShortcut);
    QObject::connect(copy, &QAction::triggered, q, [this] {
        QGuiApplication::clipboard()->setImage(q->currentViewImage());
        flash(tr("View copied to the clipboard"), 3000);
    });
    file->addSeparator();
    auto* prefsAction = file->addAction(tr("Pre&ferences…"));
    prefsAction->setShortcut(QKeySequence::Preferences);
    prefsAction->setMenuRole(QAction::PreferencesRole);
    QObject::connect(prefsAction, &QAction::triggered, q, [this] {
        PreferencesDialog dialog(prefs, deviceChoices(), fec::defaultThreadCount(), q);
        if (dialog.exec() != QDialog::Accepted)
            return;
        const Preferences old = prefs;
        prefs = dialog.preferences();
        overrideSize = -1;
        hasPreprocessOverride = false;
        if (prefs.device != old.device)
            overrideDevice.clear();
        savePrefs();
        if (prefs.theme != old.theme)
            applyTheme(themeFromString(prefs.theme));
        primary->setThreadCount(prefs.threads);
        secondary->setThreadCount(prefs.threads);
        rebuildModelMenus();
        if (prefs.device != old.device || prefs.weights != old.weights)
            reloadModels();
        else if (prefs.size != old.size || prefs.preprocess != old.preprocess || prefs.threads != old.threads)
            requestRun();
        updateStatus();
    });
    file->addSeparator();
    auto* quit = file->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    quit->setMenuRole(QAction::QuitRole);
    QObject::connect(quit, &QAction::triggered, q, &QWidget::close);

    toolbar->addAction(openImages);
    toolbar->addAction(openFolder);
    toolbar->addAction(openModel);
    toolbar->addSeparator();

    auto* view = q->menuBar()->addMenu(tr("&View"));
    auto* viewGroup = new QActionGroup(q);
    const QStringList names = {tr("&Pyramid"), tr("&Compare"), tr("&Hierarchy"), tr("H&eads"), tr("&3D"), tr("&Statistics")};
    for (int i = 0; i < names.size(); ++i) {
        auto* a = view->addAction(names[i]);
        a->setCheckable(true);
        a->setShortcut(QKeySequence(Qt::CTRL | (Qt::Key_1 + i)));
        viewGroup->addAction(a);
        viewActions << a;
        QObject::connect(a, &QAction::triggered, q, [this, i] { q->showView(static_cast<View>(i)); });
    }
    viewActions.first()->setChecked(true);
    view->addSeparator();
    auto* zoomIn = view->addAction(icon(QStringLiteral("zoom-in")), tr("Zoom &In"));
    zoomIn->setShortcut(QKeySequence::ZoomIn);
    QObject::connect(zoomIn, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->zoomIn();
    });
    auto* zoomOut = view->addAction(icon(QStringLiteral("zoom-out")), tr("Zoom &Out"));
    zoomOut->setShortcut(QKeySequence::ZoomOut);
    QObject::connect(zoomOut, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->zoomOut();
    });
    auto* fit = view->addAction(icon(QStringLiteral("zoom-fit")), tr("&Fit to Window"));
    fit->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    QObject::connect(fit, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->fitToWindow();
    });
    auto* actual = view->addAction(icon(QStringLiteral("zoom-original")), tr("&Actual Size"));
    actual->setShortcut(QKeySequence(Qt::CTRL | Qt::ALT | Qt::Key_0));
    QObject::connect(actual, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->actualSize();
    });
    auto* clearSelection = view->addAction(tr("Clear &Selection"));
    clearSelection->setShortcut(QKeySequence(Qt::Key_Escape));
    QObject::connect(clearSelection, &QAction::triggered, q, [this] { selection->setSelectedNode(-1); });
    view->addSeparator();
    for (auto* dock : std::as_const(docks))
        view->addAction(dock->toggleViewAction());
    view->addSeparator();
    themeMenu = view->addMenu(tr("&Theme"));
    choiceMenu(themeMenu,
               {{tr("System"), QStringLiteral("system")}, {tr("Light"), QStringLiteral("light")}, {tr("Dark"), QStringLiteral("dark")}},
               prefs.theme, [this](const QVariant& v) {
                   prefs.theme = v.toString();
                   savePrefs();
                   applyTheme(themeFromString(prefs.theme));
               });
    auto* fullScreen = view->addAction(tr("F&ull Screen"));
    fullScreen->setShortcut(QKeySequence::FullScreen);
    fullScreen->setCheckable(true);
    QObject::connect(fullScreen, &QAction::toggled, q, [this](bool on) { on ? q->showFullScreen() : q->showNormal(); });

    toolbar->addAction(zoomIn);
    toolbar->addAction(zoomOut);
    toolbar->addAction(fit);
    toolbar->addAction(actual);
    toolbar->addSeparator();
    toolbar->addAction(exportAction);
    toolbar->addAction(copy);

    auto* model = q->menuBar()->addMenu(tr("&Model"));
    deviceMenu = model->addMenu(tr("&Device"));
    threadsMenu = model->addMenu(tr("CPU &Threads"));
    sizeMenu = model->addMenu(tr("Input &Size"));
    preprocessMenu = model->addMenu(tr("&Preprocess"));
    weightsMenu = model->addMenu(tr("&Weights"));
    model->addSeparator();
    auto* rerun = model->addAction(tr("&Rerun"));
    rerun->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_R), QKeySequence::Refresh});
    QObject::connect(rerun, &QAction::triggered, q, [this] { requestRun(); });
    auto* reload = model->addAction(tr("Re&load Checkpoint"));
    QObject::connect(reload, &QAction::triggered, q, [this] { reloadModels(); });
    model->addSeparator();
    auto* train = model->addAction(tr("&Training…"));
    train->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_T));
    train->setStatusTip(tr("Train or fine-tune a model with fec train and watch its runs"));
    QObject::connect(train, &QAction::triggered, q, [this] { q->showTraining(); });
    rebuildModelMenus();

    auto* help = q->menuBar()->addMenu(tr("&Help"));
    auto* about = help->addAction(tr("&About FEC Explorer"));
    about->setMenuRole(QAction::AboutRole);
    QObject::connect(about, &QAction::triggered, q, [this] {
        QMessageBox::about(
            q, tr("About FEC Explorer"),
            tr("<h3>FEC Explorer %1</h3>"
               "<p>An instrument for the ad-hoc interpretability of FEC, the clustering-based vision backbone of "
               "<i>Neural Clustering based Visual Representation Learning</i> (CVPR 2024).</p>"
               "<p>Every pooling layer assigns each position to one cluster; the chain of assignments is the "
               "explanation. Hover a pixel to follow it, click a segment to light up its ancestors and "
               "descendants in every view.</p>"
               "<p>Built with Qt %2, LibTorch, OpenCV, VTK and QCustomPlot.</p>")
                .arg(QCoreApplication::applicationVersion(), QString::fromLatin1(qVersion())));
    });
    auto* aboutQt = help->addAction(tr("About &Qt"));
    aboutQt->setMenuRole(QAction::AboutQtRole);
    QObject::connect(aboutQt, &QAction::triggered, qApp, &QApplication::aboutQt);

    rebuildRecentMenus();
}

QStringList MainWindow::Private::deviceChoices() const
{
    QStringList devices{QStringLiteral("cpu")};
    if (fec::cudaAvailable()) {
        const int n = static_cast<int>(torch::cuda::device_count());
        for (int i = 0; i < n; ++i)
            devices << QStringLiteral("cuda:%1").arg(i);
    }
    return devices;
}

void MainWindow::Private::rebuildModelMenus()
{
    QList<QPair<QString, QVariant>> devices{{tr("Automatic (CUDA when available)"), QStringLiteral("auto")}};
    for (const auto& dev : deviceChoices())
        devices.append({dev == QLatin1String("cpu") ? tr("CPU") : dev.toUpper(), dev});
    choiceMenu(deviceMenu, devices, effectiveDevice(), [this](const QVariant& v) {
        prefs.device = v.toString();
        overrideDevice.clear();
        savePrefs();
        reloadModels();
    });

    QList<QPair<QString, QVariant>> threads{{tr("Automatic (%1)").arg(fec::defaultThreadCount()), 0}};
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int n = 1; n <= cores; ++n)
        threads.append({QString::number(n), n});
    choiceMenu(threadsMenu, threads, prefs.threads, [this](const QVariant& v) {
        prefs.threads = v.toInt();
        savePrefs();
        primary->setThreadCount(prefs.threads);
        secondary->setThreadCount(prefs.threads);
        updateStatus();
        requestRun();
    });

    const auto& summary = primary->summary();
    const int stored = summary.storedInputSize;
    QList<QPair<QString, QVariant>> sizes{
        {stored > 0 ? tr("From the checkpoint (%1)").arg(stored) : tr("From the checkpoint (224)"), 0}};
    for (int s : inputSizeChoices(summary.sizeMultiple > 0 ? summary.sizeMultiple : 32))
        sizes.append({QStringLiteral("%1 × %1").arg(s), s});
    choiceMenu(sizeMenu, sizes, effectiveSize(), [this](const QVariant& v) {
        prefs.size = v.toInt();
        overrideSize = -1;
        savePrefs();
        requestRun();
    });

    const QString storedPre = summary.storedPreprocess.isEmpty() ? QStringLiteral("squash") : summary.storedPreprocess;
    choiceMenu(preprocessMenu,
               {{tr("From the checkpoint (%1)").arg(storedPre), QString()},
                {tr("Squash (resize)"), QStringLiteral("squash")},
                {tr("Centre crop"), QStringLiteral("crop")}},
               effectivePreprocess(), [this](const QVariant& v) {
                   prefs.preprocess = v.toString();
                   hasPreprocessOverride = false;
                   savePrefs();
                   requestRun();
               });
    choiceMenu(weightsMenu,
               {{tr("Automatic (EMA when present)"), QStringLiteral("auto")},
                {tr("Raw state_dict"), QStringLiteral("state_dict")},
                {tr("EMA (state_dict_ema)"), QStringLiteral("ema")}},
               prefs.weights, [this](const QVariant& v) {
                   prefs.weights = v.toString();
                   savePrefs();
                   reloadModels();
               });
}

void MainWindow::Private::rebuildRecentMenus()
{
    recentCheckpointsMenu->clear();
    for (const auto& path : settings->value(kRecentCheckpoints).toStringList()) {
        auto* a = recentCheckpointsMenu->addAction(QFileInfo(path).fileName());
        a->setToolTip(path);
        a->setStatusTip(path);
        QObject::connect(a, &QAction::triggered, q, [this, path] { q->openCheckpoint(path); });
    }
    recentCheckpointsMenu->setEnabled(!recentCheckpointsMenu->isEmpty());
    recentFoldersMenu->clear();
    for (const auto& path : settings->value(kRecentFolders).toStringList()) {
        auto* a = recentFoldersMenu->addAction(QDir::toNativeSeparators(path));
        QObject::connect(a, &QAction::triggered, q, [this, path] { q->openFolder(path); });
    }
    recentFoldersMenu->setEnabled(!recentFoldersMenu->isEmpty());
    rebuildWelcomeRecent();
}

void MainWindow::Private::rebuildWelcomeRecent()
{
    auto* layout = welcomeRecent->layout();
    while (auto* item = layout->takeAt(0)) {
        delete item->widget();
        delete item;
    }
    const QStringList recent = settings->value(kRecentCheckpoints).toStringList();
    if (recent.isEmpty())
        return;
    auto* label = new QLabel(tr("<b>Recent checkpoints</b>"), welcomeRecent);
    label->setAlignment(Qt::AlignHCenter);
    layout->addWidget(label);
    for (int i = 0; i < std::min<int>(4, recent.size()); ++i) {
        const QString path = recent[i];
        auto* b = new QPushButton(QFileInfo(path).fileName(), welcomeRecent);
        b->setFlat(true);
        b->setToolTip(path);
        b->setCursor(Qt::PointingHandCursor);
        QObject::connect(b, &QPushButton::clicked, q, [this, path] { q->openCheckpoint(path); });
        layout->addWidget(b);
    }
}

// --- behaviour ---------------------------------------------------------------------------------

void MainWindow::Private::savePrefs()
{
    prefs.save(*settings);
}

void MainWindow::Private::addRecent(const char* key, const QString& path)
{
    if (path.isEmpty())
        return;
    QStringList list = settings->value(key).toStringList();
    const QString absolute = QFileInfo(path).absoluteFilePath();
    list.removeAll(absolute);
    list.prepend(absolute);
    while (list.size() > kMaxRecent)
        list.removeLast();
    settings->setValue(key, list);
    rebuildRecentMenus();
}

void MainWindow::Private::reloadModels()
{
    if (primary->isLoaded() || primary->isLoading())
        primary->load(loadOptions(primary->options().path));
    if (secondary->isLoaded() || secondary->isLoading())
        secondary->load(loadOptions(secondary->options().path));
    updateBusy();
}

void MainWindow::Private::requestRun()
{
    if (!primary->isLoaded() || currentImage.isEmpty()) {
        updateBusy();
        return;
    }
    ExplainRequest request;
    request.imagePath = currentImage;
    request.size = effectiveSize();
    request.preprocess = effectivePreprocess();
    updateTimer.start();
    timing = true;
    resultPending = true;
    currentFailed = false;
    primary->explain(request);
    if (secondary->isLoaded()) {
        secondaryPending = true;
        secondary->explain(request);
    }
    updateBusy();
}

void MainWindow::Private::onResult(const ExplainResultPtr& r)
{
    resultPending = false;
    currentFailed = false;
    result = r;
    clearError();
    selection->clear();
    lineage->setResult(r);
    prediction->setPredictions(r->topClasses, tr("This model has no classifier head (a backbone)."));
    staleTabs = {pyramid, compare, hierarchy, heads, view3dHost, stats};
    applyToTab(tabs->currentWidget());
    updateCentralPage();
    updateStatus();
    updateBusy();
    finishUpdate();
}

void MainWindow::Private::onSecondaryResult(const ExplainResultPtr& r)
{
    secondaryPending = false;
    secondaryResult = r;
    if (tabs->currentWidget() == compare && !staleTabs.contains(compare))
        compare->setSecondaryResult(r);
    else
        staleTabs.insert(compare);
    updateBusy();
    if (!resultPending)
        Q_EMIT q->resultShown();
}

void MainWindow::Private::onFailed(const QString& message, bool secondaryModel, bool outOfMemory)
{
    const auto actions = outOfMemory ? outOfMemoryActions(secondaryModel ? secondary : primary, message, false)
                                     : QList<QAction*>();
    const QString text = outOfMemory ? withOutOfMemoryAdvice(message, actions) : message;
    if (secondaryModel) {
        secondaryPending = false;
        secondaryResult.reset();
        compare->setSecondaryResult(nullptr);
        reportError(outOfMemory ? tr("The comparison model ran out of memory") : tr("The comparison model could not explain the image"),
                    text, !actions.isEmpty(), actions);
        updateBusy();
        return;
    }
    resultPending = false;
    currentFailed = true;
    timing = false;
    // Showing the previous image's clusters under a failed one would mislead.
    result.reset();
    selection->clear();
    lineage->setResult(nullptr);
    prediction->setPredictions({}, tr("No prediction: the image could not be explained."));
    staleTabs = {pyramid, compare, hierarchy, heads, view3dHost, stats};
    applyToTab(tabs->currentWidget());
    pyramid->view()->setPlaceholderText(text);
    reportError(outOfMemory ? tr("Out of memory while explaining the image") : tr("Could not explain the image"), text,
                !actions.isEmpty(), actions);
    updateStatus();
    updateBusy();
}

void MainWindow::Private::applyToTab(QWidget* tab)
{
    staleTabs.remove(tab);
    if (tab == pyramid) {
        pyramid->setResult(result);
    } else if (tab == compare) {
        compare->setResult(result);
        compare->setSecondaryResult(result ? secondaryResult : nullptr);
    } else if (tab == hierarchy) {
        hierarchy->setResult(result);
    } else if (tab == heads) {
        heads->setResult(result);
    } else if (tab == view3dHost) {
        if (view3d)
            view3d->setResult(result);
        else if (view3dHost->layout()->count() == 0)
            staleTabs.insert(tab);  // not created yet: gets the result when first shown
    } else if (tab == stats) {
        stats->setResult(result);
    }
}

void MainWindow::Private::ensure3D()
{
    if (view3d || view3dHost->layout()->count() > 0)
        return;
    const QString platform = QGuiApplication::platformName();
    if (platform == QLatin1String("offscreen") || platform == QLatin1String("minimal")) {
        auto* note = new QLabel(tr("The 3D view needs an OpenGL display; the '%1' platform has none.").arg(platform), view3dHost);
        note->setAlignment(Qt::AlignCenter);
        view3dHost->layout()->addWidget(note);
        return;
    }
    view3d = new Pyramid3DView(view3dHost);
    view3d->setSelectionModel(selection);
    view3dHost->layout()->addWidget(view3d);
    staleTabs.insert(view3dHost);
    QObject::connect(view3d, &Pyramid3DView::frameRendered, q, [this] {
        if (tabs->currentWidget() == view3dHost && result && !resultPending)
            Q_EMIT q->resultShown();
    });
}

void MainWindow::Private::finishUpdate()
{
    if (timing) {
        // Paint now so that the measurement covers what the user sees.
        q->centralWidget()->repaint();
        for (auto* dock : std::as_const(docks))
            if (dock->isVisible())
                dock->repaint();
        lastUpdateMs = updateTimer.nsecsElapsed() / 1e6;
        timing = false;
        updateStatus();
    }
    Q_EMIT q->resultShown();
}

void MainWindow::Private::updateBusy()
{
    const bool loading = primary->isLoading() || secondary->isLoading();
    const bool running = resultPending || secondaryPending || primary->isBusy() || secondary->isBusy();
    busyBox->setVisible(loading || running);
    if (loading) {
        const QString name = QFileInfo(primary->isLoading() ? primary->options().path : secondary->options().path).fileName();
        busyLabel->setText(tr("Loading %1…").arg(name));
    } else if (running && !currentImage.isEmpty()) {
        busyLabel->setText(tr("Running %1 on %2…").arg(primary->summary().fileName, QFileInfo(currentImage).fileName()));
    }
    if (loading && !primary->isLoaded())
        info->setMessage(tr("Loading %1…").arg(QFileInfo(primary->options().path).fileName()));
}

void MainWindow::Private::updateStatus()
{
    deviceLabel->setText(primary->isLoaded() ? primary->summary().device : tr("no model"));
    if (result) {
        const auto& m = result->prepared.mapping;
        imageLabel->setText(tr("%1×%2 → %3×%3 %4")
                                .arg(result->image.cols)
                                .arg(result->image.rows)
                                .arg(m.inputSize)
                                .arg(!effectivePreprocess().isEmpty()                  ? effectivePreprocess()
                                     : !primary->summary().storedPreprocess.isEmpty() ? primary->summary().storedPreprocess
                                                                                      : QStringLiteral("squash")));
        timingLabel->setText(tr("run %1 ms · shown %2 ms")
                                 .arg(result->inferenceMs + result->analysisMs, 0, 'f', 0)
                                 .arg(lastUpdateMs, 0, 'f', 0));
        timingLabel->setToolTip(tr("Traced forward %1 ms + analysis %2 ms on the worker; %3 ms from choosing the image "
                                   "until every visible view was updated")
                                    .arg(result->inferenceMs, 0, 'f', 1)
                                    .arg(result->analysisMs, 0, 'f', 1)
                                    .arg(lastUpdateMs, 0, 'f', 1));
        q->setWindowTitle(tr("%1 — %2 — FEC Explorer").arg(QFileInfo(result->imagePath).fileName(), result->modelName));
    } else {
        imageLabel->clear();
        timingLabel->clear();
        q->setWindowTitle(primary->isLoaded() ? tr("%1 — FEC Explorer").arg(primary->summary().fileName) : tr("FEC Explorer"));
    }
}

void MainWindow::Private::updateCentralPage()
{
    const bool haveModel = primary->isLoaded();
    if (haveModel) {
        stack->setCurrentWidget(tabs);
        return;
    }
    QString text = tr("<p>See how an FEC network groups the pixels of an image into clusters, level by level, "
                      "and how those clusters link into a hierarchy.</p>"
                      "<p><b>No model is loaded.</b> Open a checkpoint: the authors' ImageNet checkpoints "
                      "(fec_small, fec_base, fec_large), bare state_dicts, dense-prediction backbones and this "
                      "project's own checkpoints all work.</p>");
    if (findDefaultModel().isEmpty())
        text += tr("<p>The default model ships in <tt>models/</tt>; none was found there.</p>");
    if (!samplesFolder().isEmpty())
        text += tr("<p>Sample images: <tt>%1</tt></p>").arg(QDir::toNativeSeparators(samplesFolder()).toHtmlEscaped());
    if (primary->isLoading())
        text += tr("<p><i>Loading %1…</i></p>").arg(QFileInfo(primary->options().path).fileName().toHtmlEscaped());
    welcomeText->setText(text);
    // Laid out with an alignment, the label gets its plain size hint: reserve its wrapped height.
    const int margins = welcomeText->parentWidget()->layout()->contentsMargins().left() +
                        welcomeText->parentWidget()->layout()->contentsMargins().right();
    welcomeText->setMinimumHeight(welcomeText->heightForWidth(welcomeText->parentWidget()->width() - margins));
    stack->setCurrentWidget(welcome);
}

void MainWindow::Private::reportError(const QString& title, const QString& message, bool dialog,
                                      const QList<QAction*>& actions)
{
    lastError = message.isEmpty() ? title : message;
    errorLabel->setText(QStringLiteral("⚠ %1").arg(lastError));
    errorLabel->setToolTip(lastError);
    setErrorActions(actions);
    Q_EMIT q->errorOccurred(lastError);
    if (!options.interactive) {
        qWarning("fec-explorer: %s", qPrintable(lastError));
        return;
    }
    if (dialog) {
        QMessageBox box(QMessageBox::Warning, tr("FEC Explorer"), title, QMessageBox::NoButton, q);
        box.setInformativeText(message);
        QHash<QAbstractButton*, QPointer<QAction>> chosen;
        for (auto* a : actions)
            chosen.insert(box.addButton(a->text(), QMessageBox::AcceptRole), a);
        box.addButton(actions.isEmpty() ? QMessageBox::Ok : QMessageBox::Close);
        box.exec();
        // The action may be gone when the dialog closes (a newer error replaced it).
        if (const auto action = chosen.value(box.clickedButton()))
            action->trigger();
    }
}

void MainWindow::Private::clearError()
{
    lastError.clear();
    errorLabel->clear();
    errorLabel->setToolTip(QString());
    setErrorActions({});
}

void MainWindow::Private::setErrorActions(const QList<QAction*>& actions)
{
    // Later, not now: this runs inside an action's own triggered() when it is taken.
    for (auto* b : errorActionsBox->findChildren<QToolButton*>(QString(), Qt::FindDirectChildrenOnly))
        b->deleteLater();
    for (auto* a : std::as_const(errorActions))
        a->deleteLater();
    errorActions = actions;
    for (auto* a : actions) {
        a->setParent(q);
        auto* button = new QToolButton(errorActionsBox);
        button->setDefaultAction(a);
        errorActionsBox->layout()->addWidget(button);
        // Taking an offer withdraws all of them; the retry reports its own outcome.
        QObject::connect(a, &QAction::triggered, q, [this] { setErrorActions({}); });
    }
    errorActionsBox->setVisible(!actions.isEmpty());
}

void MainWindow::Private::onLoadFailed(ModelSession* session, const QString& path, const QString& message, bool outOfMemory)
{
    const QString name = QFileInfo(path).fileName();
    const auto actions = outOfMemory ? outOfMemoryActions(session, message, true) : QList<QAction*>();
    const QString title = outOfMemory ? tr("Not enough memory to load %1").arg(name)
                          : session == secondary ? tr("Could not open the comparison checkpoint %1").arg(name)
                                                 : tr("Could not open the checkpoint %1").arg(name);
    reportError(title, outOfMemory ? withOutOfMemoryAdvice(message, actions) : message, true, actions);
}

QString MainWindow::Private::withOutOfMemoryAdvice(const QString& message, const QList<QAction*>& actions) const
{
    bool cpu = false, smaller = false;
    for (auto* a : actions) {
        cpu = cpu || a->objectName() == QLatin1String("retryOnCpu");
        smaller = smaller || a->objectName() == QLatin1String("retrySmaller");
    }
    const QString advice = cpu && smaller ? tr("Not enough memory: retry on the CPU or at a smaller input size.")
                           : cpu          ? tr("Not enough memory: retry on the CPU, or close other programs using the GPU.")
                           : smaller      ? tr("Not enough memory: retry at a smaller input size.")
                                          : tr("Not enough memory: close other programs or choose a smaller model.");
    return message + QStringLiteral(" — ") + advice;
}

QList<QAction*> MainWindow::Private::outOfMemoryActions(ModelSession* session, const QString& message, bool loading)
{
    QList<QAction*> actions;
    // The CPU is worth offering when the failure happened on a GPU: the model was on one, or CUDA's
    // allocator said so ("CUDA out of memory. Tried to allocate ..."), and the CPU is not chosen already.
    const auto bundle = session->bundle();
    const bool onGpu = (bundle && !bundle->device.is_cpu()) || message.contains(QLatin1String("CUDA")) ||
                       (loading && session->options().device != QLatin1String("cpu") && fec::cudaAvailable());
    if (onGpu && effectiveDevice() != QLatin1String("cpu")) {
        auto* retry = new QAction(tr("Retry on CPU"), q);
        retry->setObjectName(QStringLiteral("retryOnCpu"));
        retry->setToolTip(tr("Load the model on the CPU for this session (slower; uses main memory) and run again"));
        const QString path = session->options().path;
        QObject::connect(retry, &QAction::triggered, q, [this, session, path, loading] {
            overrideDevice = QStringLiteral("cpu");
            rebuildModelMenus();
            flash(tr("Retrying on the CPU…"), 5000);
            if (loading)
                session->load(loadOptions(path));
            else
                reloadModels();  // the loaded handler runs the current image again
            updateBusy();
        });
        actions << retry;
    }
    if (!loading) {
        // Activation memory grows with the number of pixels: about half of them should fit.
        const auto& summary = primary->summary();
        const int current = effectiveSize() > 0 ? effectiveSize() : (summary.storedInputSize > 0 ? summary.storedInputSize : 224);
        int smaller = 0;
        for (int s : inputSizeChoices(summary.sizeMultiple > 0 ? summary.sizeMultiple : 32))
            if (s * 4 <= current * 3)
                smaller = s;
        if (smaller > 0) {
            auto* retry = new QAction(tr("Retry at %1 × %1").arg(smaller), q);
            retry->setObjectName(QStringLiteral("retrySmaller"));
            retry->setToolTip(tr("Run again at a smaller input size for this session (Model ▸ Input size)"));
            QObject::connect(retry, &QAction::triggered, q, [this, smaller] {
                overrideSize = smaller;
                rebuildModelMenus();
                requestRun();
            });
            actions << retry;
        }
    }
    return actions;
}

ImageView* MainWindow::Private::activeImageView() const
{
    QWidget* w = tabs->currentWidget();
    if (w == pyramid)
        return pyramid->view();
    if (w == compare)
        return compare->view(0);
    if (w == hierarchy)
        return hierarchy->pyramidPanel()->view();
    return nullptr;
}

// --- public API --------------------------------------------------------------------------------

bool MainWindow::viewFromName(const QString& name, View* view)
{
    static const QStringList names = {QStringLiteral("pyramid"), QStringLiteral("compare"), QStringLiteral("hierarchy"),
                                      QStringLiteral("heads"),   QStringLiteral("3d"),      QStringLiteral("statistics")};
    const int i = names.indexOf(name.toLower());
    if (i < 0)
        return false;
    if (view)
        *view = static_cast<View>(i);
    return true;
}

void MainWindow::openCheckpoint(const QString& path)
{
    d->clearError();
    d->primary->load(d->loadOptions(path));
    d->updateBusy();
    d->updateCentralPage();
}

void MainWindow::openComparisonCheckpoint(const QString& path)
{
    d->clearError();
    d->secondary->load(d->loadOptions(path));
    d->updateBusy();
}

void MainWindow::openImages(const QStringList& paths)
{
    if (paths.isEmpty())
        return;
    if (paths.size() == 1 && QFileInfo(paths.first()).isDir()) {
        openFolder(paths.first());
        return;
    }
    QStringList files;
    for (const auto& p : paths) {
        if (QFileInfo(p).isDir()) {
            GalleryModel lister;
            lister.setFolder(p);
            for (int i = 0; i < lister.count(); ++i)
                files << lister.path(i);
        } else {
            files << p;
        }
    }
    d->gallery->setFiles(files);
    if (!files.isEmpty())
        d->gallery->setCurrentPath(files.first());
}

void MainWindow::openFolder(const QString& folder)
{
    if (!QFileInfo(folder).isDir()) {
        d->reportError(tr("Could not open the folder"), tr("%1 is not a folder").arg(folder), d->options.interactive);
        return;
    }
    const int n = d->gallery->setFolder(folder);
    d->addRecent(kRecentFolders, folder);
    d->settings->setValue("dialogs/imageDir", folder);
    if (n == 0) {
        d->reportError(tr("No images"), tr("%1 has no images (PNG, JPEG, BMP, TIFF, WebP, PPM, GIF)").arg(folder), false);
        return;
    }
    d->gallery->setCurrentPath(d->gallery->model()->path(0));
}

void MainWindow::setCurrentImage(const QString& path)
{
    if (path.isEmpty())
        return;
    const QString absolute = QFileInfo(path).absoluteFilePath();
    if (d->gallery->model()->rowOf(absolute) >= 0 && d->gallery->currentPath() != absolute) {
        d->gallery->setCurrentPath(absolute);  // comes back here through currentImageChanged
        return;
    }
    if (absolute == d->currentImage && (d->result || d->resultPending))
        return;
    d->currentImage = absolute;
    if (d->gallery->model()->rowOf(absolute) < 0) {
        d->gallery->setFiles({absolute});
        d->gallery->setCurrentPath(absolute);
    }
    d->requestRun();
}

QString MainWindow::currentImage() const
{
    return d->currentImage;
}

void MainWindow::showView(View view)
{
    d->tabs->setCurrentIndex(static_cast<int>(view));
}

MainWindow::View MainWindow::currentView() const
{
    return static_cast<View>(d->tabs->currentIndex());
}

void MainWindow::setSessionOverrides(int size, const QString& preprocess, const QString& device)
{
    d->overrideSize = size;
    d->hasPreprocessOverride = !preprocess.isNull();
    d->overridePreprocess = preprocess;
    const bool deviceChanged = d->overrideDevice != device;
    d->overrideDevice = device;
    d->rebuildModelMenus();
    if (deviceChanged && !device.isEmpty())
        d->reloadModels();
    else
        d->requestRun();
}

void MainWindow::setLevel(int level)
{
    d->pyramid->setLevel(level);
    d->hierarchy->pyramidPanel()->setLevel(level);
}

void MainWindow::setK(int k)
{
    d->pyramid->setK(k);
    d->hierarchy->pyramidPanel()->setK(k);
}

bool MainWindow::isModelLoaded() const
{
    return d->primary->isLoaded();
}

bool MainWindow::isBusy() const
{
    return d->primary->isLoading() || d->secondary->isLoading() || d->resultPending || d->secondaryPending ||
           d->primary->isBusy() || d->secondary->isBusy();
}

bool MainWindow::isViewUpToDate() const
{
    if (!d->result || d->resultPending || d->secondaryPending)
        return false;
    if (d->stack->currentWidget() != d->tabs)
        return false;
    QWidget* w = d->tabs->currentWidget();
    if (d->staleTabs.contains(w))
        return false;
    if (w == d->pyramid)
        return d->pyramid->renderedRequestId() == d->result->requestId;
    if (w == d->compare)
        return d->compare->isRendered();
    if (w == d->hierarchy)
        return d->hierarchy->pyramidPanel()->renderedRequestId() == d->result->requestId;
    if (w == d->view3dHost)
        return d->view3d == nullptr ? d->view3dHost->layout()->count() > 0 : d->view3d->hasRendered();
    return true;
}

bool MainWindow::isSettled() const
{
    if (isBusy())
        return false;
    if (!d->primary->isLoaded() || d->currentImage.isEmpty() || d->currentFailed)
        return true;
    return isViewUpToDate();
}

QList<QAction*> MainWindow::errorActions() const
{
    return d->errorActions;
}

QString MainWindow::requestedDevice() const
{
    return d->effectiveDevice();
}

QString MainWindow::lastError() const
{
    return d->lastError;
}

QImage MainWindow::grabWindowImage()
{
    QImage image = grab().toImage();
    QPainter painter(&image);
    // QWidget::grab() may not see what OpenGL widgets drew: paint their frames over it.
    for (auto* gl : findChildren<QOpenGLWidget*>()) {
        if (!gl->isVisible() || gl->window() != this)
            continue;
        const QImage frame = gl == d->view3d ? d->view3d->renderToImage() : gl->grabFramebuffer();
        if (!frame.isNull())
            painter.drawImage(QRect(gl->mapTo(this, QPoint(0, 0)), gl->size()), frame);
    }
    painter.end();
    return image;
}

QImage MainWindow::currentViewImage()
{
    QWidget* w = d->tabs->currentWidget();
    if (d->stack->currentWidget() != d->tabs)
        return d->welcome->grab().toImage();
    if (w == d->pyramid && !d->pyramid->renderedImage().isNull())
        return d->pyramid->renderedImage();
    if (w == d->hierarchy && !d->hierarchy->pyramidPanel()->renderedImage().isNull())
        return d->hierarchy->pyramidPanel()->renderedImage();
    if (w == d->view3dHost && d->view3d)
        return d->view3d->renderToImage();
    return w->grab().toImage();
}

ExplainResultPtr MainWindow::currentResult() const
{
    return d->result;
}

ExplainResultPtr MainWindow::secondaryResult() const
{
    return d->secondaryResult;
}

double MainWindow::lastUpdateMs() const
{
    return d->lastUpdateMs;
}

SelectionModel* MainWindow::selectionModel() const
{
    return d->selection;
}
PyramidPanel* MainWindow::pyramidPanel() const
{
    return d->pyramid;
}
ComparePanel* MainWindow::comparePanel() const
{
    return d->compare;
}
HierarchyPanel* MainWindow::hierarchyPanel() const
{
    return d->hierarchy;
}
LineagePanel* MainWindow::lineagePanel() const
{
    return d->lineage;
}
PredictionPanel* MainWindow::predictionPanel() const
{
    return d->prediction;
}
ModelInfoPanel* MainWindow::modelInfoPanel() const
{
    return d->info;
}
ImageGallery* MainWindow::gallery() const
{
    return d->gallery;
}
HeadsView* MainWindow::headsView() const
{
    return d->heads;
}
StatisticsView* MainWindow::statisticsView() const
{
    return d->stats;
}
Pyramid3DView* MainWindow::pyramid3DView() const
{
    return d->view3d;
}
TrainingPanel* MainWindow::trainingPanel() const
{
    return d->training;
}

void MainWindow::showTraining()
{
    d->trainingDock->show();
    d->trainingDock->raise();
}

void MainWindow::closeEvent(QCloseEvent* event)
{
    // Active training runs: stop them, leave them running, or keep the window open.
    if (!d->training->prepareClose(d->options.interactive ? TrainingPanel::CloseAction::Ask
                                                          : TrainingPanel::CloseAction::Stop)) {
        event->ignore();
        return;
    }
    if (d->options.useSettings) {
        d->settings->setValue(QStringLiteral("window/geometry"), saveGeometry());
        d->settings->setValue(QStringLiteral("window/state"), saveState());
    }
    d->primary->cancel();
    d->secondary->cancel();
    event->accept();
}

void MainWindow::showEvent(QShowEvent* event)
{
    QMainWindow::showEvent(event);
    if (!d->docksSized)
        QTimer::singleShot(0, this, [this] { d->sizeDocks(); });
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event)
{
    if (event->mimeData()->hasUrls()) {
        for (const auto& url : event->mimeData()->urls())
            if (url.isLocalFile()) {
                event->acceptProposedAction();
                return;
            }
    }
}

void MainWindow::dropEvent(QDropEvent* event)
{
    QStringList images;
    QString checkpoint, folder;
    for (const auto& url : event->mimeData()->urls()) {
        if (!url.isLocalFile())
            continue;
        const QString path = url.toLocalFile();
        const QFileInfo fi(path);
        if (fi.isDir())
            folder = folder.isEmpty() ? path : folder;
        else if (isCheckpointFile(path))
            checkpoint = checkpoint.isEmpty() ? path : checkpoint;
        else
            images << path;
    }
    event->acceptProposedAction();
    if (!checkpoint.isEmpty())
        openCheckpoint(checkpoint);
    if (!images.isEmpty())
        openImages(images);
    else if (!folder.isEmpty())
        openFolder(folder);
}

}  // namespace fec::ui
