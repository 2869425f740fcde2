// Opening things in the main window: checkpoints (the primary and the comparison one), images
// and folders, from the file dialogs, drag and drop or the public API, and the recent-files lists.

#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QMimeData>
#include <QUrl>

#include "fec/ui/concepts_view.h"
#include "fec/ui/error_presenter.h"
#include "fec/ui/image_gallery.h"
#include "main_window_p.h"

namespace fec::ui {

namespace {

bool isCheckpointFile(const QString& path)
{
    const QString name = QFileInfo(path).fileName().toLower();
    return name.endsWith(QLatin1String(".pth")) || name.endsWith(QLatin1String(".pt")) ||
           name.endsWith(QLatin1String(".tar")) || name.endsWith(QLatin1String(".ckpt"));
}

}  // namespace

void MainWindow::Private::chooseImages()
{
    const QStringList paths = QFileDialog::getOpenFileNames(
        q, tr("Open images"), settings->value("dialogs/imageDir").toString(),
        tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.ppm *.pgm *.gif);;All files (*)"));
    if (!paths.isEmpty()) {
        settings->setValue("dialogs/imageDir", QFileInfo(paths.first()).absolutePath());
        q->openImages(paths);
    }
}

void MainWindow::Private::chooseFolder()
{
    const QString dir =
        QFileDialog::getExistingDirectory(q, tr("Open folder"), settings->value("dialogs/imageDir").toString());
    if (!dir.isEmpty())
        q->openFolder(dir);
}

void MainWindow::Private::chooseCheckpoint()
{
    const QString path =
        QFileDialog::getOpenFileName(q, tr("Open checkpoint"), settings->value("dialogs/checkpointDir").toString(),
                                     tr("Checkpoints (*.pth *.pth.tar *.tar *.pt *.ckpt);;All files (*)"));
    if (!path.isEmpty()) {
        settings->setValue("dialogs/checkpointDir", QFileInfo(path).absolutePath());
        q->openCheckpoint(path);
    }
}

void MainWindow::Private::chooseComparisonCheckpoint()
{
    const QString path = QFileDialog::getOpenFileName(
        q, tr("Open comparison checkpoint"), settings->value("dialogs/checkpointDir").toString(),
        tr("Checkpoints (*.pth *.pth.tar *.tar *.pt *.ckpt);;All files (*)"));
    if (!path.isEmpty())
        q->openComparisonCheckpoint(path);
}

void MainWindow::Private::chooseAtlas()
{
    q->showView(View::Concepts);
    concepts->chooseAndOpen();
}

void MainWindow::Private::buildAtlas()
{
    q->showView(View::Concepts);
    concepts->chooseAndBuild();
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

void MainWindow::openCheckpoint(const QString& path)
{
    d->clearError();
    d->syncSettings();
    d->controller->load(ModelRole::Primary, path);
    d->updateBusy();
    d->updateCentralPage();
}

void MainWindow::openComparisonCheckpoint(const QString& path)
{
    d->clearError();
    d->syncSettings();
    d->controller->load(ModelRole::Comparison, path);
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
        d->reportError(tr("No images"), tr("%1 has no images (PNG, JPEG, BMP, TIFF, WebP, PPM, GIF)").arg(folder),
                       false);
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
    if (absolute == d->controller->image() && (d->controller->result() || d->controller->isResultPending()))
        return;
    d->controller->setImage(absolute);
    if (d->gallery->model()->rowOf(absolute) < 0) {
        d->gallery->setFiles({absolute});
        d->gallery->setCurrentPath(absolute);
    }
    d->requestRun();
}

QString MainWindow::currentImage() const
{
    return d->controller->image();
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
