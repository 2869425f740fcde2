#include "fec/ui/main_window.h"

#include <algorithm>

#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QFileInfo>
#include <QGuiApplication>
#include <QOpenGLWidget>
#include <QPainter>
#include <QStackedWidget>
#include <QTabWidget>
#include <QTimer>
#include <QVBoxLayout>

#include "fec/resources.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/concepts_view.h"
#include "fec/ui/error_presenter.h"
#include "fec/ui/evidence_view.h"
#include "fec/ui/heads_view.h"
#include "fec/ui/hierarchy_panel.h"
#include "fec/ui/image_gallery.h"
#include "fec/ui/image_view.h"
#include "fec/ui/lineage_panel.h"
#include "fec/ui/model_bundle.h"
#include "fec/ui/model_info_panel.h"
#include "fec/ui/model_session.h"
#include "fec/ui/prediction_panel.h"
#include "fec/ui/pyramid3d_view.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/statistics_view.h"
#include "fec/ui/theme.h"
#include "fec/ui/training_panel.h"
#include "fec/ui/welcome_page.h"
#include "main_window_p.h"

// Resources of a static library are registered explicitly, outside any namespace.
static void initExplorerResources()
{
    Q_INIT_RESOURCE(explorer);
}

namespace fec::ui {

namespace {

// The shipped default model (the same one `fec` uses without --checkpoint).
QString findDefaultModel()
{
    return QString::fromStdString(fec::defaultModelPath());
}

QString samplesFolder()
{
    const QString dir = QDir(QString::fromStdString(fec::resourceDir())).filePath(QStringLiteral("samples"));
    return QDir(dir).exists() && !QDir(dir).entryList(QDir::Files).isEmpty() ? dir : QString();
}

}  // namespace

QIcon explorerIcon(const QString& name)
{
    return QIcon(QStringLiteral(":/fec-explorer/icons/%1.svg").arg(name));
}

MainWindow::MainWindow(QWidget* parent) : MainWindow(MainWindowOptions(), parent) {}

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent) : QMainWindow(parent), d(new Private)
{
    initExplorerResources();
    d->q = this;
    d->options = options;
    if (options.useSettings) {
        d->settings = std::make_unique<QSettings>();
    } else {
        d->tempSettingsFile = QDir::temp().filePath(
            QStringLiteral("fec-explorer-%1-%2.ini").arg(QCoreApplication::applicationPid()).arg(quintptr(this)));
        QFile::remove(d->tempSettingsFile);
        d->settings = std::make_unique<QSettings>(d->tempSettingsFile, QSettings::IniFormat);
    }
    d->prefs = Preferences::load(*d->settings);
    applyTheme(themeFromString(d->prefs.theme));

    setWindowTitle(tr("FEC Explorer"));
    setWindowIcon(explorerIcon(QStringLiteral("fec-explorer")));
    setAcceptDrops(true);
    setDockNestingEnabled(true);

    d->selection = new SelectionModel(this);
    d->controller = new ExplainController(this);
    d->errors = new ErrorPresenter(this, options.interactive, this);
    d->syncSettings();

    d->buildCentral();
    d->buildDocks();
    d->buildStatusBar();
    d->buildMenus();
    d->connectController();

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
            if (!d->primary()->isLoaded() && !d->primary()->isLoading()) {
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
    welcome = new WelcomePage(q);
    QObject::connect(welcome, &WelcomePage::openCheckpointRequested, q, [this] { chooseCheckpoint(); });
    QObject::connect(welcome, &WelcomePage::openImagesRequested, q, [this] { chooseImages(); });
    QObject::connect(welcome, &WelcomePage::openFolderRequested, q, [this] { chooseFolder(); });
    QObject::connect(welcome, &WelcomePage::recentCheckpointChosen, q, &MainWindow::openCheckpoint);
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
    evidence = new EvidenceView(selection, tabs);
    // Interventions run on the primary model's worker thread, between its explain runs.
    evidence->setModelRunner([this](EvidenceView::ModelTask task) {
        return primary() && primary()->runOnModel([task = std::move(task)](const ModelBundle& bundle) {
            task(*bundle.loaded.model.ptr(), bundle.device);
        });
    });
    tabs->addTab(pyramid, tr("Pyramid"));
    tabs->addTab(compare, tr("Compare"));
    tabs->addTab(hierarchy, tr("Hierarchy"));
    tabs->addTab(heads, tr("Heads"));
    tabs->addTab(view3dHost, tr("3D"));
    tabs->addTab(stats, tr("Statistics"));
    tabs->addTab(evidence, tr("Evidence"));
    concepts = new ConceptsView(tabs);
    tabs->addTab(concepts, tr("Concepts"));
    tabs->setTabToolTip(0, tr("The image with one level of the segment pyramid, or a K-means merge"));
    tabs->setTabToolTip(1, tr("Levels, encoding heads, K-means merges and a second checkpoint side by side"));
    tabs->setTabToolTip(2, tr("The linked hierarchy of segments as a tree"));
    tabs->setTabToolTip(3, tr("Every head of an encoding block and their agreement"));
    tabs->setTabToolTip(4, tr("The pyramid as stacked planes with parent links (drag to rotate)"));
    tabs->setTabToolTip(5, tr("Segment sizes, assignment margins, empty clusters and head agreement"));
    tabs->setTabToolTip(
        6, tr("Why this prediction: each final segment's contribution to a class logit, and interventions"));
    tabs->setTabToolTip(7, tr("The concept atlas: the recurring parts the model found across a whole dataset"));
    QObject::connect(concepts, &ConceptsView::segmentActivated, q, &MainWindow::openSegment);
    // The Pyramid view can name the atlas level's segments by concept (and shows renames).
    QObject::connect(concepts, &ConceptsView::atlasChanged, q, [this] {
        pyramid->setConceptAtlas(concepts->atlas());
        evidence->setConceptAtlas(concepts->atlas());
    });
    QObject::connect(concepts, &ConceptsView::failed, q, [this](const QString& title, const QString& message) {
        reportError(title, message, options.interactive);
    });
    QObject::connect(concepts, &ConceptsView::buildFinished, q, [this](bool ok, const QString& message) {
        if (ok)
            flash(message, 8000);
    });
    stack->addWidget(tabs);
    q->setCentralWidget(stack);

    // The controller knows the views by their tab indices (MainWindow::View).
    for (int i = 0; i < tabs->count(); ++i)
        controller->addView(i, tabs->widget(i) == compare);
    controller->setShownView(tabs->currentIndex());
    QObject::connect(tabs, &QTabWidget::currentChanged, q, [this](int index) {
        QWidget* w = tabs->widget(index);
        controller->setShownView(index);
        if (w == view3dHost)
            ensure3D();
        if (controller->isStale(index))
            applyToTab(w);
        if (index >= 0 && index < viewActions.size())
            viewActions[index]->setChecked(true);
    });
}

void MainWindow::Private::buildDocks()
{
    auto addDock = [this](const QString& title, const QString& name, QWidget* widget, Qt::DockWidgetArea area) {
        auto* dock = new QDockWidget(title, q);
        dock->setObjectName(name);
        dock->setWidget(widget);
        dock->setFeatures(QDockWidget::DockWidgetClosable | QDockWidget::DockWidgetMovable |
                          QDockWidget::DockWidgetFloatable);
        q->addDockWidget(area, dock);
        docks << dock;
        return dock;
    };
    gallery = new ImageGallery(q);
    addDock(tr("Images"), QStringLiteral("galleryDock"), gallery, Qt::LeftDockWidgetArea);
    prediction = new PredictionPanel(q);
    auto* predictionDock =
        addDock(tr("Prediction"), QStringLiteral("predictionDock"), prediction, Qt::RightDockWidgetArea);
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

// --- behaviour ---------------------------------------------------------------------------------

void MainWindow::Private::savePrefs()
{
    prefs.save(*settings);
}

void MainWindow::Private::syncSettings()
{
    ExplainSettings settings;
    settings.size = effectiveSize();
    settings.preprocess = effectivePreprocess();
    settings.device = effectiveDevice();
    settings.weights = prefs.weights;
    settings.threads = prefs.threads;
    controller->setSettings(settings);
}

void MainWindow::Private::reloadModels()
{
    syncSettings();
    controller->reload();
    updateBusy();
}

void MainWindow::Private::requestRun()
{
    syncSettings();
    controller->run();
}

void MainWindow::Private::connectController()
{
    QObject::connect(controller, &ExplainController::activityChanged, q, [this] { updateBusy(); });
    QObject::connect(controller, &ExplainController::runRequested, q, [this] {
        updateTimer.start();
        timing = true;
    });
    QObject::connect(controller, &ExplainController::runStarted, q, [this](const QString& path) {
        busyLabel->setText(tr("Running %1 on %2…").arg(primary()->summary().fileName, QFileInfo(path).fileName()));
    });
    QObject::connect(controller, &ExplainController::modelLoaded, q, [this](ModelRole role) {
        if (role == ModelRole::Comparison) {
            info->setSecondarySummary(secondary()->summary());
            closeComparisonAction->setEnabled(true);
            flash(tr("Comparison model %1 loaded").arg(secondary()->summary().fileName), 5000);
            q->showView(View::Compare);
            return;
        }
        const auto& s = primary()->summary();
        addRecent(kRecentCheckpoints, s.path);
        info->setSummary(s);
        {
            QStringList names;
            if (const auto bundle = primary()->bundle())
                for (const auto& n : bundle->classNames)
                    names << QString::fromStdString(n);
            evidence->setClassNames(names);
        }
        rebuildModelMenus();
        clearError();
        updateConceptsModel();
        updateCentralPage();
        updateStatus();
        flash(tr("Loaded %1 (%2, %3)").arg(s.fileName, s.variant, s.device), 5000);
        Q_EMIT q->modelLoaded();
    });
    QObject::connect(controller, &ExplainController::loadFailed, q, [this](const ExplainFailure& failure) {
        if (failure.model == ModelRole::Primary) {
            if (!primary()->isLoaded())
                info->setMessage(tr("No model loaded."));
            updateCentralPage();
        }
        errors->reportFailure(failure);
    });
    QObject::connect(controller, &ExplainController::resultReady, q, [this] { onResult(); });
    QObject::connect(controller, &ExplainController::comparisonResultReady, q,
                     [this](const ExplainResultPtr& r) { onSecondaryResult(r); });
    QObject::connect(controller, &ExplainController::failed, q, [this](const ExplainFailure& f) { onFailed(f); });

    QObject::connect(errors, &ErrorPresenter::errorOccurred, q, &MainWindow::errorOccurred);
    QObject::connect(errors, &ErrorPresenter::retryOnCpuRequested, q,
                     [this](const ExplainFailure& f) { retryOnCpu(f); });
    QObject::connect(errors, &ErrorPresenter::retryAtSizeRequested, q, [this](int size) {
        overrideSize = size;
        rebuildModelMenus();
        requestRun();
    });
}

void MainWindow::Private::onResult()
{
    const ExplainResultPtr r = controller->result();
    clearError();
    selection->clear();
    lineage->setResult(r);
    prediction->setPredictions(r->topClasses, tr("This model has no classifier head (a backbone)."));
    applyToTab(tabs->currentWidget());
    selectPendingSegment();
    updateCentralPage();
    updateStatus();
    updateBusy();
    finishUpdate();
}

void MainWindow::Private::selectPendingSegment()
{
    const ExplainResultPtr r = controller->result();
    if (!r || pendingImage.isEmpty() || QFileInfo(r->imagePath).absoluteFilePath() != pendingImage)
        return;
    pendingImage.clear();
    const auto atlas = concepts->atlas();
    if (atlas && atlas->inputSize > 0 && atlas->inputSize != r->size) {
        reportError(tr("Segment not selected"),
                    tr("The atlas was built at %1 × %1 pixels and the explorer runs at %2 × %2: the segment ids do "
                       "not match (Model ▸ Input Size)")
                        .arg(atlas->inputSize)
                        .arg(r->size),
                    false);
        return;
    }
    const int node = r->pyramid.nodeOf(pendingLevel, pendingSegment);
    if (node < 0) {
        reportError(tr("Segment not selected"),
                    tr("Level %1 of this image has no segment %2").arg(pendingLevel).arg(pendingSegment), false);
        return;
    }
    selection->setSelectedNode(node);
}

void MainWindow::Private::updateConceptsModel()
{
    const ModelSession* session = primary();
    if (!session->isLoaded()) {
        concepts->setModelFactory({});
        return;
    }
    const ModelLoadOptions load = session->options();
    concepts->setCheckpoint(session->summary().path);
    // A copy of the model of its own, loaded on the build's thread.
    concepts->setModelFactory([load] {
        const std::shared_ptr<ModelBundle> bundle = loadModelBundle(load);
        bundle->loaded.model->eval();
        ConceptsView::BuildModel m;
        m.keepAlive = bundle;
        m.model = bundle->loaded.model.ptr().get();
        m.info = bundle->loaded.info;
        m.checkpoint = load.path.toStdString();
        m.device = bundle->device;
        m.classNames = bundle->classNames;
        return m;
    });
}

void MainWindow::Private::onSecondaryResult(const ExplainResultPtr& r)
{
    // Shown and up to date, the Compare view takes it now; otherwise it is stale and draws it when shown.
    if (!controller->isStale(viewKey(compare)))
        compare->setSecondaryResult(r);
    updateBusy();
    if (!controller->isResultPending())
        Q_EMIT q->resultShown();
}

void MainWindow::Private::onFailed(const ExplainFailure& failure)
{
    if (failure.model == ModelRole::Comparison) {
        compare->setSecondaryResult(nullptr);
        errors->reportFailure(failure);
        updateBusy();
        return;
    }
    timing = false;
    selection->clear();
    lineage->setResult(nullptr);
    prediction->setPredictions({}, tr("No prediction: the image could not be explained."));
    applyToTab(tabs->currentWidget());
    pyramid->view()->setPlaceholderText(ErrorPresenter::message(failure));
    errors->reportFailure(failure);
    updateStatus();
    updateBusy();
}

void MainWindow::Private::retryOnCpu(const ExplainFailure& failure)
{
    overrideDevice = QStringLiteral("cpu");
    rebuildModelMenus();
    flash(tr("Retrying on the CPU…"), 5000);
    if (failure.loading) {
        syncSettings();
        controller->load(failure.model, failure.checkpoint);
    } else {
        reloadModels();  // the loaded handler runs the current image again
    }
    updateBusy();
}

int MainWindow::Private::viewKey(QWidget* tab) const
{
    return tabs->indexOf(tab);
}

void MainWindow::Private::applyToTab(QWidget* tab)
{
    controller->markDrawn(viewKey(tab));
    const ExplainResultPtr result = controller->result();
    if (tab == pyramid) {
        pyramid->setResult(result);
    } else if (tab == compare) {
        compare->setResult(result);
        compare->setSecondaryResult(result ? controller->comparisonResult() : nullptr);
    } else if (tab == hierarchy) {
        hierarchy->setResult(result);
    } else if (tab == heads) {
        heads->setResult(result);
    } else if (tab == view3dHost) {
        if (view3d)
            view3d->setResult(result);
        else if (view3dHost->layout()->count() == 0)
            controller->markStale(viewKey(tab));  // not created yet: gets the result when first shown
    } else if (tab == stats) {
        stats->setResult(result);
    } else if (tab == evidence) {
        evidence->setResult(result);
    }
    // The Concepts view does not depend on the current image.
}

void MainWindow::Private::ensure3D()
{
    if (view3d || view3dHost->layout()->count() > 0)
        return;
    const QString platform = QGuiApplication::platformName();
    if (platform == QLatin1String("offscreen") || platform == QLatin1String("minimal")) {
        auto* note = new QLabel(tr("The 3D view needs an OpenGL display; the '%1' platform has none.").arg(platform),
                                view3dHost);
        note->setAlignment(Qt::AlignCenter);
        view3dHost->layout()->addWidget(note);
        return;
    }
    view3d = new Pyramid3DView(view3dHost);
    view3d->setSelectionModel(selection);
    view3dHost->layout()->addWidget(view3d);
    controller->markStale(viewKey(view3dHost));
    QObject::connect(view3d, &Pyramid3DView::frameRendered, q, [this] {
        if (tabs->currentWidget() == view3dHost && controller->result() && !controller->isResultPending())
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

void MainWindow::Private::updateCentralPage()
{
    if (primary()->isLoaded()) {
        stack->setCurrentWidget(tabs);
        return;
    }
    welcome->setState(!findDefaultModel().isEmpty(), samplesFolder(),
                      primary()->isLoading() ? QFileInfo(primary()->options().path).fileName() : QString());
    stack->setCurrentWidget(welcome);
}

void MainWindow::Private::reportError(const QString& title, const QString& message, bool dialog)
{
    errors->report(title, message, dialog);
}

void MainWindow::Private::clearError()
{
    errors->clear();
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
    if (w == evidence)
        return evidence->view();
    return nullptr;
}

// --- public API --------------------------------------------------------------------------------

bool MainWindow::viewFromName(const QString& name, View* view)
{
    static const QStringList names = {QStringLiteral("pyramid"),   QStringLiteral("compare"),
                                      QStringLiteral("hierarchy"), QStringLiteral("heads"),
                                      QStringLiteral("3d"),        QStringLiteral("statistics"),
                                      QStringLiteral("evidence"),  QStringLiteral("concepts")};
    const int i = names.indexOf(name.toLower());
    if (i < 0)
        return false;
    if (view)
        *view = static_cast<View>(i);
    return true;
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
    return d->controller->isModelLoaded();
}

bool MainWindow::isBusy() const
{
    return d->controller->isBusy();
}

bool MainWindow::isViewUpToDate() const
{
    const ExplainResultPtr result = d->controller->result();
    if (!result || d->controller->isResultPending() || d->controller->isComparisonPending())
        return false;
    if (d->stack->currentWidget() != d->tabs)
        return false;
    QWidget* w = d->tabs->currentWidget();
    if (d->controller->isStale(d->viewKey(w)))
        return false;
    if (w == d->pyramid)
        return d->pyramid->renderedRequestId() == result->requestId;
    if (w == d->compare)
        return d->compare->isRendered();
    if (w == d->hierarchy)
        return d->hierarchy->pyramidPanel()->renderedRequestId() == result->requestId;
    if (w == d->view3dHost)
        return d->view3d == nullptr ? d->view3dHost->layout()->count() > 0 : d->view3d->hasRendered();
    if (w == d->evidence)
        return d->evidence->renderedRequestId() == result->requestId;
    if (w == d->concepts)
        return d->concepts->isSettled();
    return true;
}

bool MainWindow::isSettled() const
{
    if (isBusy())
        return false;
    if (d->stack->currentWidget() == d->tabs && d->tabs->currentWidget() == d->concepts)
        return d->concepts->isSettled();
    if (!d->controller->isModelLoaded() || d->controller->image().isEmpty() || d->controller->hasFailed())
        return true;
    return isViewUpToDate();
}

QList<QAction*> MainWindow::errorActions() const
{
    return d->errors->offers();
}

QString MainWindow::requestedDevice() const
{
    return d->effectiveDevice();
}

QString MainWindow::lastError() const
{
    return d->errors->lastError();
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
    // The Evidence view exports its overlay with the legend that gives the colours' values.
    if (w == d->evidence)
        if (const QImage image = d->evidence->exportImage(); !image.isNull())
            return image;
    return w->grab().toImage();
}

ExplainResultPtr MainWindow::currentResult() const
{
    return d->controller->result();
}

ExplainResultPtr MainWindow::secondaryResult() const
{
    return d->controller->comparisonResult();
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
EvidenceView* MainWindow::evidenceView() const
{
    return d->evidence;
}
ConceptsView* MainWindow::conceptsView() const
{
    return d->concepts;
}
void MainWindow::openAtlas(const QString& dir)
{
    d->concepts->openAtlas(dir);
}
void MainWindow::openSegment(const QString& imagePath, int level, int segment)
{
    d->pendingImage = QFileInfo(imagePath).absoluteFilePath();
    d->pendingLevel = level;
    d->pendingSegment = segment;
    showView(View::Pyramid);
    setLevel(level);
    setCurrentImage(imagePath);
    // Already shown: no new result will come.
    if (!d->controller->isResultPending())
        d->selectPendingSegment();
}
void MainWindow::setEvidenceClass(const QString& name)
{
    d->evidence->setTargetClassName(name);
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
    d->controller->cancel();
    event->accept();
}

void MainWindow::showEvent(QShowEvent* event)
{
    QMainWindow::showEvent(event);
    if (!d->docksSized)
        QTimer::singleShot(0, this, [this] { d->sizeDocks(); });
}

}  // namespace fec::ui
