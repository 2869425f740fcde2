#include "fec/ui/image_gallery.h"

#include <QBuffer>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QImageReader>
#include <QItemSelectionModel>
#include <QLabel>
#include <QListView>
#include <QPainter>
#include <QPointer>
#include <QVBoxLayout>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/imaging/image_decode.h"

namespace fec::ui {

namespace {

constexpr int kMaxInFlight = 2;
constexpr int kMaxWanted = 256;

QIcon makePlaceholder(bool broken)
{
    const int s = GalleryModel::kThumbnailSize;
    QPixmap pm(s, s);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    p.setPen(QPen(QColor(128, 128, 128, 160), 1.5, broken ? Qt::DashLine : Qt::SolidLine));
    p.setBrush(QColor(128, 128, 128, 40));
    p.drawRoundedRect(QRectF(6, 14, s - 12, s - 28), 4, 4);
    if (broken) {
        p.setPen(QColor(213, 94, 0));
        p.drawText(QRect(0, 0, s, s), Qt::AlignCenter, QStringLiteral("?"));
    }
    return QIcon(pm);
}

struct Thumbnail {
    QImage image;
    QString problem;  // why there is no image
};

// Decodes a small version: Qt's readers scale JPEG while decoding; OpenCV covers what Qt lacks
// (TIFF, WebP). The file is read once; its header is checked against the same pixel limit as
// loading the image for inference, so a decompression bomb never reaches a decoder.
Thumbnail decodeThumbnail(const QString& path)
{
    // A FIFO or device named *.png would block open() or never end: regular files only.
    const QFileInfo info(path);
    if (!info.exists())
        return {{}, QStringLiteral("file not found")};
    if (!info.isFile())
        return {{}, QStringLiteral("not a regular file")};
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        return {{}, file.errorString()};
    if (file.size() > qint64(imaging::ImageLoadOptions{}.maxFileBytes))
        return {{}, QStringLiteral("file of %1 MiB, larger than images are read").arg(file.size() >> 20)};
    const QByteArray bytes = file.readAll();
    const auto header = imaging::probeImageHeader(reinterpret_cast<const uint8_t*>(bytes.constData()),
                                                  static_cast<std::size_t>(bytes.size()));
    const int64_t limit = imaging::defaultMaxImagePixels();
    if (header.width > 0 && header.height > 0 && header.width > limit / header.height)
        return {{},
                QStringLiteral("%1 x %2 pixels, over the limit of %3 pixels (FEC_MAX_IMAGE_PIXELS)")
                    .arg(header.width)
                    .arg(header.height)
                    .arg(limit)};

    const int s = GalleryModel::kThumbnailSize * 2;  // room for high-DPI screens
    QBuffer buffer;
    buffer.setData(bytes);
    buffer.open(QIODevice::ReadOnly);
    QImageReader reader(&buffer);
    reader.setAutoTransform(true);
    if (reader.canRead()) {
        const QSize size = reader.size();
        if (size.isValid() && (size.width() > s || size.height() > s))
            reader.setScaledSize(size.scaled(s, s, Qt::KeepAspectRatio));
        QImage image = reader.read();
        if (!image.isNull())
            return {image.width() > s || image.height() > s
                        ? image.scaled(s, s, Qt::KeepAspectRatio, Qt::SmoothTransformation)
                        : image,
                    {}};
    }
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.constData()));
    cv::Mat bgr = bytes.isEmpty() ? cv::Mat() : cv::imdecode(encoded, cv::IMREAD_REDUCED_COLOR_2);
    if (bgr.empty())
        return {{},
                bytes.isEmpty() ? QStringLiteral("empty file") : QStringLiteral("not an image that can be decoded")};
    const double f = std::min(1.0, double(s) / std::max(bgr.cols, bgr.rows));
    if (f < 1.0)
        cv::resize(bgr, bgr, cv::Size(), f, f, cv::INTER_AREA);
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return {QImage(rgb.data, rgb.cols, rgb.rows, static_cast<int>(rgb.step), QImage::Format_RGB888).copy(), {}};
}

// "img2" before "img10", case-insensitive (QCollator's numeric mode needs ICU, absent on some systems).
bool naturalLess(const QString& a, const QString& b)
{
    int i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i].isDigit() && b[j].isDigit()) {
            int ei = i, ej = j;
            while (ei < a.size() && a[ei].isDigit())
                ++ei;
            while (ej < b.size() && b[ej].isDigit())
                ++ej;
            // Compare the numbers without leading zeros: longer is larger, else lexicographic.
            QStringView na = QStringView(a).mid(i, ei - i), nb = QStringView(b).mid(j, ej - j);
            while (na.size() > 1 && na.front() == QLatin1Char('0'))
                na = na.mid(1);
            while (nb.size() > 1 && nb.front() == QLatin1Char('0'))
                nb = nb.mid(1);
            if (na.size() != nb.size())
                return na.size() < nb.size();
            const int c = na.compare(nb);
            if (c != 0)
                return c < 0;
            i = ei;
            j = ej;
            continue;
        }
        const QChar ca = a[i].toCaseFolded(), cb = b[j].toCaseFolded();
        if (ca != cb)
            return ca < cb;
        ++i;
        ++j;
    }
    if ((a.size() - i) != (b.size() - j))
        return (a.size() - i) < (b.size() - j);
    return a < b;
}

}  // namespace

GalleryModel::GalleryModel(QObject* parent) : QAbstractListModel(parent)
{
    m_pool.setMaxThreadCount(kMaxInFlight);
    m_placeholder = makePlaceholder(false);
    m_broken = makePlaceholder(true);
}

GalleryModel::~GalleryModel()
{
    m_pool.clear();
    m_pool.waitForDone();
}

QStringList GalleryModel::imageSuffixes()
{
    return {QStringLiteral("png"), QStringLiteral("jpg"),  QStringLiteral("jpeg"), QStringLiteral("bmp"),
            QStringLiteral("tif"), QStringLiteral("tiff"), QStringLiteral("webp"), QStringLiteral("ppm"),
            QStringLiteral("pgm"), QStringLiteral("pbm"),  QStringLiteral("gif")};
}

bool GalleryModel::isImageFile(const QString& path)
{
    return imageSuffixes().contains(QFileInfo(path).suffix().toLower());
}

void GalleryModel::reset(const QStringList& paths)
{
    beginResetModel();
    ++m_generation;
    m_paths = paths;
    m_rows.clear();
    for (int i = 0; i < m_paths.size(); ++i)
        m_rows.insert(m_paths[i], i);
    m_wanted.clear();
    m_pending.clear();
    m_failed.clear();
    m_decoded = 0;
    endResetModel();
}

int GalleryModel::setFolder(const QString& folder)
{
    QDir dir(folder);
    QStringList filters;
    for (const auto& s : imageSuffixes())
        filters << QStringLiteral("*.") + s << QStringLiteral("*.") + s.toUpper();
    QStringList names = dir.entryList(filters, QDir::Files | QDir::Readable, QDir::NoSort);
    std::sort(names.begin(), names.end(), naturalLess);
    QStringList paths;
    paths.reserve(names.size());
    for (const auto& n : std::as_const(names))
        paths << dir.absoluteFilePath(n);
    m_folder = dir.absolutePath();
    reset(paths);
    return count();
}

void GalleryModel::setFiles(const QStringList& paths)
{
    QStringList absolute;
    for (const auto& p : paths)
        absolute << QFileInfo(p).absoluteFilePath();
    m_folder.clear();
    reset(absolute);
}

QString GalleryModel::path(int row) const
{
    return row >= 0 && row < m_paths.size() ? m_paths[row] : QString();
}

QString GalleryModel::problem(int row) const
{
    return row >= 0 && row < m_paths.size() ? m_failed.value(m_paths[row]) : QString();
}

int GalleryModel::rowOf(const QString& path) const
{
    return m_rows.value(QFileInfo(path).absoluteFilePath(), -1);
}

int GalleryModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_paths.size());
}

QVariant GalleryModel::data(const QModelIndex& index, int role) const
{
    if (!index.isValid() || index.row() >= m_paths.size())
        return {};
    const QString& path = m_paths[index.row()];
    switch (role) {
    case Qt::DisplayRole:
        return QFileInfo(path).fileName();
    case Qt::ToolTipRole:
        if (const auto failed = m_failed.constFind(path); failed != m_failed.constEnd())
            return QStringLiteral("%1\nNo preview: %2").arg(path, failed.value());
        return path;
    case PathRole:
        return path;
    case Qt::DecorationRole: {
        if (const QIcon* icon = m_cache.object(path))
            return *icon;
        if (m_failed.contains(path))
            return m_broken;
        request(index.row());
        return m_placeholder;
    }
    default:
        return {};
    }
}

void GalleryModel::request(int row) const
{
    const QString& path = m_paths[row];
    if (m_pending.contains(path)) {
        // Asked again (visible again): move it to the front of the queue.
        if (m_wanted.removeOne(path))
            m_wanted.append(path);
        return;
    }
    m_pending.insert(path);
    m_wanted.append(path);
    while (m_wanted.size() > kMaxWanted)
        m_pending.remove(m_wanted.takeFirst());  // scrolled away long ago; asked again if seen again
    pump();
}

void GalleryModel::pump() const
{
    while (m_inFlight < kMaxInFlight && !m_wanted.isEmpty()) {
        const QString path = m_wanted.takeLast();
        ++m_inFlight;
        const quint64 generation = m_generation;
        QPointer<GalleryModel> self(const_cast<GalleryModel*>(this));
        m_pool.start([self, path, generation] {
            const Thumbnail thumbnail = decodeThumbnail(path);
            if (!self)
                return;
            QMetaObject::invokeMethod(
                self.data(),
                [self, generation, path, thumbnail] {
                    if (self)
                        self->finished(generation, path, thumbnail.image, thumbnail.problem);
                },
                Qt::QueuedConnection);
        });
    }
}

void GalleryModel::finished(quint64 generation, const QString& path, const QImage& image, const QString& problem)
{
    --m_inFlight;
    if (generation == m_generation) {
        m_pending.remove(path);
        ++m_decoded;
        if (image.isNull())
            m_failed.insert(path, problem.isEmpty() ? QStringLiteral("unreadable") : problem);
        else
            m_cache.insert(path, new QIcon(QPixmap::fromImage(image)));
        const int row = m_rows.value(path, -1);
        if (row >= 0) {
            const QModelIndex i = index(row);
            Q_EMIT dataChanged(i, i, {Qt::DecorationRole});
            Q_EMIT thumbnailReady(row);
        }
    }
    pump();
}

ImageGallery::ImageGallery(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    m_title = new QLabel(this);
    m_title->setWordWrap(true);
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_title);
    m_model = new GalleryModel(this);
    m_view = new QListView(this);
    m_view->setViewMode(QListView::IconMode);
    m_view->setFlow(QListView::LeftToRight);
    m_view->setWrapping(true);
    m_view->setResizeMode(QListView::Adjust);
    m_view->setMovement(QListView::Static);
    m_view->setUniformItemSizes(true);  // the view never asks every item for its size
    m_view->setIconSize(QSize(GalleryModel::kThumbnailSize, GalleryModel::kThumbnailSize));
    m_view->setGridSize(
        QSize(GalleryModel::kThumbnailSize + 20, GalleryModel::kThumbnailSize + 2 * fontMetrics().height() + 6));
    m_view->setTextElideMode(Qt::ElideMiddle);
    m_view->setWordWrap(false);
    m_view->setSelectionMode(QAbstractItemView::SingleSelection);
    m_view->setModel(m_model);
    layout->addWidget(m_view, 1);
    connect(m_view->selectionModel(), &QItemSelectionModel::currentChanged, this, [this](const QModelIndex& current) {
        if (current.isValid())
            Q_EMIT currentImageChanged(m_model->path(current.row()));
    });
    updateTitle();
}

int ImageGallery::setFolder(const QString& folder)
{
    const int n = m_model->setFolder(folder);
    updateTitle();
    return n;
}

void ImageGallery::setFiles(const QStringList& paths)
{
    m_model->setFiles(paths);
    updateTitle();
}

QString ImageGallery::currentPath() const
{
    return m_model->path(m_view->currentIndex().row());
}

void ImageGallery::setCurrentPath(const QString& path)
{
    const int row = m_model->rowOf(path);
    if (row < 0)
        return;
    const QModelIndex index = m_model->index(row);
    m_view->selectionModel()->setCurrentIndex(index, QItemSelectionModel::ClearAndSelect);
    m_view->scrollTo(index);
}

void ImageGallery::step(int delta)
{
    if (m_model->count() == 0)
        return;
    const int row = std::clamp(m_view->currentIndex().row() + delta, 0, m_model->count() - 1);
    setCurrentPath(m_model->path(row));
}

void ImageGallery::updateTitle()
{
    const int n = m_model->count();
    const QString where =
        m_model->folder().isEmpty() ? tr("Opened files") : QDir::toNativeSeparators(m_model->folder());
    m_title->setText(n ? tr("%1 — %n image(s)", nullptr, n).arg(where)
                       : tr("No images. Open a folder (Ctrl+Shift+O) or drop images here."));
    m_title->setToolTip(m_model->folder());
}

}  // namespace fec::ui
