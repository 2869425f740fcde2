// fec-explorer: the explorer window. Everything but argument handling lives in fec::ui.

#include <cstdio>

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QSurfaceFormat>
#include <QTimer>

#include "fec/runtime.h"
#include "fec/ui/main_window.h"
#include "fec/ui/screenshot.h"

int main(int argc, char** argv)
{
    fec::ensurePassiveOpenMp(argc, argv);
    fec::initRuntime(0);

    // The VTK 3D view needs a core-profile context; this must precede QApplication.
    QSurfaceFormat format;
    format.setVersion(3, 2);
    format.setProfile(QSurfaceFormat::CoreProfile);
    format.setDepthBufferSize(24);
    format.setStencilBufferSize(8);
    QSurfaceFormat::setDefaultFormat(format);
    QGuiApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);

    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("fec-explorer"));
    QApplication::setApplicationDisplayName(QStringLiteral("FEC Explorer"));
    QApplication::setOrganizationName(QStringLiteral("fec-explorer"));
    QApplication::setApplicationVersion(QStringLiteral(FEC_EXPLORER_VERSION));
    QApplication::setDesktopFileName(QStringLiteral("fec-explorer"));

    QCommandLineParser parser;
    parser.setApplicationDescription(
        QStringLiteral("Explore how an FEC clustering network groups the pixels of images."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption checkpoint(QStringLiteral("checkpoint"), QStringLiteral("FEC checkpoint to load."),
                                        QStringLiteral("CKPT"));
    const QCommandLineOption view(
        QStringLiteral("view"),
        QStringLiteral("View to show: pyramid, compare, hierarchy, 3d, heads, statistics, evidence, concepts."),
        QStringLiteral("VIEW"));
    const QCommandLineOption level(QStringLiteral("level"), QStringLiteral("Pyramid level to show (1 = finest)."),
                                   QStringLiteral("N"));
    const QCommandLineOption k(QStringLiteral("k"), QStringLiteral("Show the K-means merge into K groups."),
                               QStringLiteral("K"));
    const QCommandLineOption screenshot(
        QStringLiteral("screenshot"),
        QStringLiteral("Save the window to FILE.png once every view has drawn, then exit."),
        QStringLiteral("FILE.png"));
    const QCommandLineOption size(QStringLiteral("size"),
                                  QStringLiteral("Model input side (default: from the checkpoint, else 224)."),
                                  QStringLiteral("S"));
    const QCommandLineOption preprocess(QStringLiteral("preprocess"),
                                        QStringLiteral("squash (resize) or crop (centre crop)."),
                                        QStringLiteral("squash|crop"));
    const QCommandLineOption device(QStringLiteral("device"), QStringLiteral("auto, cpu or cuda."),
                                    QStringLiteral("auto|cpu|cuda"));
    const QCommandLineOption className(
        QStringLiteral("class"),
        QStringLiteral("Class the Evidence view explains, by name or index (default: the top-1 class)."),
        QStringLiteral("NAME"));
    const QCommandLineOption atlas(
        QStringLiteral("atlas"),
        QStringLiteral("Concept atlas folder (written by `fec concepts`) to open in the Concepts view."),
        QStringLiteral("DIR"));
    parser.addOptions({checkpoint, view, level, k, screenshot, size, preprocess, device, className, atlas});
    parser.addPositionalArgument(QStringLiteral("IMAGE"), QStringLiteral("Images or folders to open."),
                                 QStringLiteral("[IMAGE...]"));
    parser.process(app);

    const auto usageError = [](const QString& message) {
        std::fprintf(stderr, "fec-explorer: %s\n", qPrintable(message));
        return 2;
    };
    fec::ui::MainWindow::View startView = fec::ui::MainWindow::View::Pyramid;
    if (parser.isSet(view) && !fec::ui::MainWindow::viewFromName(parser.value(view), &startView))
        return usageError(
            QStringLiteral(
                "unknown --view '%1' (pyramid, compare, hierarchy, 3d, heads, statistics, evidence, concepts)")
                .arg(parser.value(view)));
    auto intOption = [&](const QCommandLineOption& option, int min, int* out) {
        if (!parser.isSet(option))
            return true;
        bool ok = false;
        *out = parser.value(option).toInt(&ok);
        return ok && *out >= min;
    };
    int levelValue = 0, kValue = 0, sizeValue = 0;
    if (!intOption(level, 1, &levelValue))
        return usageError(QStringLiteral("--level takes a level number >= 1"));
    if (!intOption(k, 2, &kValue))
        return usageError(QStringLiteral("--k takes a number of groups >= 2"));
    if (!intOption(size, 8, &sizeValue))
        return usageError(QStringLiteral("--size takes an input side in pixels (e.g. 224)"));
    const QString preprocessValue = parser.value(preprocess);
    if (parser.isSet(preprocess) && preprocessValue != QLatin1String("squash") &&
        preprocessValue != QLatin1String("crop"))
        return usageError(QStringLiteral("--preprocess takes squash or crop"));
    const QString deviceValue = parser.value(device);
    if (parser.isSet(device) && deviceValue != QLatin1String("auto") && deviceValue != QLatin1String("cpu") &&
        !deviceValue.startsWith(QLatin1String("cuda")))
        return usageError(QStringLiteral("--device takes auto, cpu or cuda"));
    if (parser.isSet(atlas) && !QFileInfo(parser.value(atlas)).isDir())
        return usageError(QStringLiteral("--atlas %1: not a folder").arg(parser.value(atlas)));
    if (parser.isSet(atlas) && !parser.isSet(view))
        startView = fec::ui::MainWindow::View::Concepts;
    if (parser.isSet(checkpoint) && !QFileInfo::exists(parser.value(checkpoint)))
        return usageError(QStringLiteral("checkpoint %1: no such file").arg(parser.value(checkpoint)));

    const bool automated = parser.isSet(screenshot);
    fec::ui::MainWindowOptions options;
    options.useSettings = !automated;
    options.interactive = !automated;
    options.loadDefaults = !parser.isSet(checkpoint);
    fec::ui::MainWindow window(options);
    if (parser.isSet(size) || parser.isSet(preprocess) || parser.isSet(device))
        window.setSessionOverrides(parser.isSet(size) ? sizeValue : -1,
                                   parser.isSet(preprocess) ? preprocessValue : QString(),
                                   parser.isSet(device) ? deviceValue : QString());
    if (automated)
        window.resize(1400, 900);
    window.showView(startView);
    if (levelValue > 0)
        window.setLevel(levelValue);
    if (kValue > 0)
        window.setK(kValue);
    if (parser.isSet(className))
        window.setEvidenceClass(parser.value(className));
    window.show();

    if (parser.isSet(checkpoint))
        window.openCheckpoint(parser.value(checkpoint));
    if (!parser.positionalArguments().isEmpty())
        window.openImages(parser.positionalArguments());
    if (parser.isSet(atlas))
        window.openAtlas(parser.value(atlas));

    if (automated) {
        auto* task = new fec::ui::ScreenshotTask(&window, parser.value(screenshot), 120000, &app);
        QObject::connect(task, &fec::ui::ScreenshotTask::finished, &app, [](int code, const QString& message) {
            std::fprintf(code == 0 ? stdout : stderr, "fec-explorer: %s\n", qPrintable(message));
            QCoreApplication::exit(code);
        });
        task->start();
    }
    return app.exec();
}
