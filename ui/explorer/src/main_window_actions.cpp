// The main window's menus, toolbar and actions: what each does, its shortcut and when it is
// enabled; the Model menu's choices (device, threads, input size, preprocessing, weights), the
// recent-files menus, and the preferences dialog.

#include <algorithm>
#include <thread>

#include <torch/cuda.h>

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QDir>
#include <QDockWidget>
#include <QFileInfo>
#include <QGuiApplication>
#include <QMenuBar>
#include <QMessageBox>
#include <QStackedWidget>
#include <QTabWidget>
#include <QToolBar>

#include "fec/runtime.h"
#include "fec/explain/concepts.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/concepts_view.h"
#include "fec/ui/evidence_view.h"
#include "fec/ui/export_dialog.h"
#include "fec/ui/image_gallery.h"
#include "fec/ui/image_view.h"
#include "fec/ui/model_bundle.h"
#include "fec/ui/model_info_panel.h"
#include "fec/ui/model_session.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/theme.h"
#include "fec/ui/welcome_page.h"
#include "main_window_p.h"

namespace fec::ui {

QMenu* MainWindow::Private::choiceMenu(QMenu* menu, const QList<QPair<QString, QVariant>>& choices,
                                       const QVariant& current, std::function<void(const QVariant&)> onChoose)
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

void MainWindow::Private::editPreferences()
{
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
    syncSettings();
    rebuildModelMenus();
    if (prefs.device != old.device || prefs.weights != old.weights)
        reloadModels();
    else if (prefs.size != old.size || prefs.preprocess != old.preprocess || prefs.threads != old.threads)
        requestRun();
    updateStatus();
}

void MainWindow::Private::buildMenus()
{
    auto* file = q->menuBar()->addMenu(tr("&File"));
    auto* toolbar = q->addToolBar(tr("Main"));
    toolbar->setObjectName(QStringLiteral("mainToolBar"));
    toolbar->setIconSize(QSize(20, 20));
    toolbar->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);

    auto* openImages = file->addAction(explorerIcon(QStringLiteral("open-image")), tr("Open &Images…"));
    openImages->setShortcut(QKeySequence::Open);
    QObject::connect(openImages, &QAction::triggered, q, [this] { chooseImages(); });
    auto* openFolder = file->addAction(explorerIcon(QStringLiteral("open-folder")), tr("Open &Folder…"));
    openFolder->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    QObject::connect(openFolder, &QAction::triggered, q, [this] { chooseFolder(); });
    auto* openModel = file->addAction(explorerIcon(QStringLiteral("open-checkpoint")), tr("Open &Checkpoint…"));
    openModel->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_L));
    QObject::connect(openModel, &QAction::triggered, q, [this] { chooseCheckpoint(); });
    auto* openSecond = file->addAction(tr("Open C&omparison Checkpoint…"));
    openSecond->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_L));
    QObject::connect(openSecond, &QAction::triggered, q, [this] { chooseComparisonCheckpoint(); });
    closeComparisonAction = file->addAction(tr("Close Comparison Checkpoint"));
    closeComparisonAction->setEnabled(false);
    QObject::connect(closeComparisonAction, &QAction::triggered, q, [this] {
        controller->closeComparison();
        compare->setSecondaryResult(nullptr);
        info->setSecondarySummary(ModelSummary());
        closeComparisonAction->setEnabled(false);
        updateBusy();
    });
    recentCheckpointsMenu = file->addMenu(tr("Recent Check&points"));
    recentFoldersMenu = file->addMenu(tr("Recent Fol&ders"));
    file->addSeparator();
    QObject::connect(file->addAction(tr("Open Concept &Atlas…")), &QAction::triggered, q, [this] { chooseAtlas(); });
    QObject::connect(file->addAction(tr("&Build Concept Atlas…")), &QAction::triggered, q, [this] { buildAtlas(); });
    file->addSeparator();
    auto* next = file->addAction(tr("&Next Image"));
    next->setShortcut(QKeySequence(Qt::ALT | Qt::Key_Right));
    QObject::connect(next, &QAction::triggered, q, [this] { gallery->step(1); });
    auto* previous = file->addAction(tr("P&revious Image"));
    previous->setShortcut(QKeySequence(Qt::ALT | Qt::Key_Left));
    QObject::connect(previous, &QAction::triggered, q, [this] { gallery->step(-1); });
    file->addSeparator();
    const auto viewImage = [this] { return q->currentViewImage(); };
    auto* exportAction = file->addAction(explorerIcon(QStringLiteral("export")), tr("&Export…"));
    exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    QObject::connect(exportAction, &QAction::triggered, q, [this, viewImage] {
        const auto result = controller->result();
        if (!result) {
            reportError(tr("Nothing to export"), tr("Open a checkpoint and an image first."), options.interactive);
            return;
        }
        ExportDialog dialog(result, viewImage(), q);
        // The evidence row shows what the Evidence view shows, when it has shown this image.
        if (evidence->result() == result)
            if (auto report = evidence->report()) {
                EvidenceRowRequest row;
                row.target = evidence->targetClass();
                row.versus = evidence->versusClass();
                row.className = evidence->className(row.target);
                row.versusName = row.versus >= 0 ? evidence->className(row.versus) : QString();
                row.report = std::move(report);
                dialog.offerEvidenceRow(row, true);
            }
        // The concepts panel shows what the Pyramid view's Concepts toggle shows for this image.
        if (const auto atlas = concepts->atlas(); atlas && pyramid->result() == result && pyramid->showsConcepts()) {
            ConceptPanelRequest panel;
            panel.level = atlas->level;
            panel.segmentConcepts = pyramid->segmentConcepts();
            for (int id = 0; id < static_cast<int>(atlas->concepts.size()); ++id)
                panel.names.push_back(QString::fromStdString(atlas->conceptLabel(id)));
            dialog.offerConceptPanel(panel, true);
        }
        dialog.exec();
    });
    auto* copy = file->addAction(explorerIcon(QStringLiteral("copy")), tr("&Copy View to Clipboard"));
    copy->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C), QKeySequence::Copy});
    copy->setShortcutContext(Qt::WindowShortcut);
    QObject::connect(copy, &QAction::triggered, q, [this, viewImage] {
        QGuiApplication::clipboard()->setImage(viewImage());
        flash(tr("View copied to the clipboard"), 3000);
    });
    file->addSeparator();
    auto* prefsAction = file->addAction(tr("Pre&ferences…"));
    prefsAction->setShortcut(QKeySequence::Preferences);
    prefsAction->setMenuRole(QAction::PreferencesRole);
    QObject::connect(prefsAction, &QAction::triggered, q, [this] { editPreferences(); });
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
    const QStringList names = {tr("&Pyramid"), tr("&Compare"),    tr("&Hierarchy"), tr("H&eads"),
                               tr("&3D"),      tr("&Statistics"), tr("E&vidence"),  tr("C&oncepts")};
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
    auto* zoomIn = view->addAction(explorerIcon(QStringLiteral("zoom-in")), tr("Zoom &In"));
    zoomIn->setShortcut(QKeySequence::ZoomIn);
    QObject::connect(zoomIn, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->zoomIn();
    });
    auto* zoomOut = view->addAction(explorerIcon(QStringLiteral("zoom-out")), tr("Zoom &Out"));
    zoomOut->setShortcut(QKeySequence::ZoomOut);
    QObject::connect(zoomOut, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->zoomOut();
    });
    auto* fit = view->addAction(explorerIcon(QStringLiteral("zoom-fit")), tr("&Fit to Window"));
    fit->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    QObject::connect(fit, &QAction::triggered, q, [this] {
        if (auto* v = activeImageView())
            v->fitToWindow();
    });
    auto* actual = view->addAction(explorerIcon(QStringLiteral("zoom-original")), tr("&Actual Size"));
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
               {{tr("System"), QStringLiteral("system")},
                {tr("Light"), QStringLiteral("light")},
                {tr("Dark"), QStringLiteral("dark")}},
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
        syncSettings();
        updateStatus();
        requestRun();
    });

    const auto& summary = primary()->summary();
    evidence->setModelPath(summary.path);  // the "dataset" baseline reads the statistics beside it
    const int stored = summary.storedInputSize;
    QList<QPair<QString, QVariant>> sizes{{stored > 0 ? tr("From the checkpoint (%1)").arg(stored)
                                                      : tr("From the checkpoint (%1)").arg(kDefaultInputSize),
                                           0}};
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
    welcome->setRecentCheckpoints(settings->value(kRecentCheckpoints).toStringList());
}

}  // namespace fec::ui
