#pragma once

// Thumbnails of the images in a folder (or a list of files). Listing is instant; thumbnails are
// decoded off the GUI thread, only for the items the view asks for (the visible ones), most
// recently asked first, into a small cache, with a placeholder until they are ready.

#include <QAbstractListModel>
#include <QCache>
#include <QHash>
#include <QIcon>
#include <QList>
#include <QSet>
#include <QStringList>
#include <QThreadPool>
#include <QWidget>

class QLabel;
class QListView;

namespace fec::ui {

class GalleryModel : public QAbstractListModel {
    Q_OBJECT
public:
    enum Role { PathRole = Qt::UserRole + 1 };

    explicit GalleryModel(QObject* parent = nullptr);
    /// Waits for running decodes.
    ~GalleryModel() override;

    /// Lists the images directly in `folder` (names only, no decoding). Returns their count.
    int setFolder(const QString& folder);
    void setFiles(const QStringList& paths);
    QString folder() const { return m_folder; }
    QString path(int row) const;
    int rowOf(const QString& path) const;
    int count() const { return static_cast<int>(m_paths.size()); }
    /// Thumbnails decoded since the last setFolder/setFiles (for tests).
    int decodedCount() const { return m_decoded; }
    /// Why the thumbnail of `row` could not be made ("" when it could, or is not decoded yet).
    QString problem(int row) const;
    /// True while decodes are queued or running.
    bool isDecoding() const { return m_inFlight > 0 || !m_wanted.isEmpty(); }
    /// Longest thumbnail side in device-independent pixels.
    static constexpr int kThumbnailSize = 96;

    /// File suffixes (lower case, no dot) taken as images.
    static QStringList imageSuffixes();
    static bool isImageFile(const QString& path);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;

Q_SIGNALS:
    void thumbnailReady(int row);

private:
    void request(int row) const;
    void pump() const;
    void finished(quint64 generation, const QString& path, const QImage& image, const QString& problem);
    void reset(const QStringList& paths);

    QStringList m_paths;
    QHash<QString, int> m_rows;
    QString m_folder;
    quint64 m_generation = 0;
    mutable QCache<QString, QIcon> m_cache{400};
    mutable QSet<QString> m_pending;           // asked for, not yet finished
    mutable QList<QString> m_wanted;           // waiting to start, most recent last
    mutable QHash<QString, QString> m_failed;  // path -> why no thumbnail
    mutable int m_inFlight = 0;
    int m_decoded = 0;
    QIcon m_placeholder;
    QIcon m_broken;
    mutable QThreadPool m_pool;
};

class ImageGallery : public QWidget {
    Q_OBJECT
public:
    explicit ImageGallery(QWidget* parent = nullptr);

    int setFolder(const QString& folder);
    void setFiles(const QStringList& paths);
    GalleryModel* model() const { return m_model; }
    QListView* view() const { return m_view; }
    QString currentPath() const;
    /// Makes `path` current (emits currentImageChanged when it changes).
    void setCurrentPath(const QString& path);
    /// Moves the current image by `delta` rows (clamped).
    void step(int delta);

Q_SIGNALS:
    void currentImageChanged(const QString& path);

private:
    void updateTitle();

    GalleryModel* m_model = nullptr;
    QListView* m_view = nullptr;
    QLabel* m_title = nullptr;
};

}  // namespace fec::ui
