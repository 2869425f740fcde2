#pragma once

// The concept atlas of a model (fec/explain/concepts.h): open an atlas folder, or build one from
// an image folder or Fashion-MNIST's IDX files in the background (progress, Cancel; a second
// build cancels the first). A grid of the concepts (contact sheet, name, size, top classes; F2 or
// double-click renames, saved atomically into concepts.json), and for the selected concept its
// contact sheet, class-frequency and class-evidence bars and the list of its kept segments; a
// segment of that list opens its image in the explorer (segmentActivated).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <c10/core/Device.h>

#include <QAbstractListModel>
#include <QFuture>
#include <QImage>
#include <QList>
#include <QPixmap>
#include <QString>
#include <QWidget>

#include "fec/checkpoint.h"
#include "fec/explain/concepts.h"

class QCustomPlot;
class QLabel;
class QListView;
class QProgressBar;
class QPushButton;
class QStandardItemModel;
class QTableView;

namespace fec::ui {

class ConceptListModel;
class ImageView;

/// An atlas as the view shows it: the engine's Atlas, its folder and every concept's contact sheet.
struct AtlasBundle {
    std::shared_ptr<explain::Atlas> atlas;
    QString dir;
    std::vector<QImage> sheets;  ///< concept_<k>.png, null where missing or unreadable
};

/// Where to build an atlas from and into.
struct AtlasBuildRequest {
    QString data;                            ///< image folder, or the folder of Fashion-MNIST's IDX files
    QString split = QStringLiteral("test");  ///< IDX split: "test" or "train"
    int64_t limit = 0;                       ///< the first N images (IDX) or N seeded ones (folders); 0: all
    QString outDir;                          ///< the atlas folder written
    explain::ConceptOptions options;
};

class ConceptsView : public QWidget {
    Q_OBJECT
public:
    /// A model to build with, owned by `keepAlive`; made on the build's thread.
    struct BuildModel {
        std::shared_ptr<void> keepAlive;
        FecModelImpl* model = nullptr;
        CheckpointInfo info;
        std::string checkpoint;               ///< path of the checkpoint file
        std::vector<std::string> classNames;  ///< the model's class names (may be empty)
        c10::Device device{c10::kCPU};
    };
    /// Loads the current model for a build (a copy of its own, so that explaining images goes on
    /// meanwhile). Called off the GUI thread; throws with a readable message.
    using ModelFactory = std::function<BuildModel()>;

    explicit ConceptsView(QWidget* parent = nullptr);
    /// Cancels running jobs and waits for them.
    ~ConceptsView() override;

    /// The checkpoint of the current model: atlases of other model files are refused (and an
    /// atlas shown is closed when the model changes to another file). Empty: no model, nothing
    /// is checked.
    void setCheckpoint(const QString& path);
    QString checkpoint() const { return m_checkpoint; }
    /// Without a factory, building is disabled.
    void setModelFactory(ModelFactory factory);

    /// Reads an atlas folder in the background; atlasChanged() or failed() follows.
    void openAtlas(const QString& dir);
    /// Builds an atlas in the background into request.outDir and shows it; cancels a build in progress.
    void buildAtlas(const AtlasBuildRequest& request);
    /// Asks for the data and settings, then builds.
    void chooseAndBuild();
    /// Asks for an atlas folder, then opens it.
    void chooseAndOpen();

    bool isBuilding() const { return m_buildRunning; }
    /// No job running and what is loaded is drawn.
    bool isSettled() const;
    const AtlasBundle& bundle() const { return m_bundle; }
    std::shared_ptr<const explain::Atlas> atlas() const { return m_bundle.atlas; }
    QString atlasDir() const { return m_bundle.dir; }
    /// The reason the last open or build failed (empty after a success).
    QString lastError() const { return m_lastError; }
    /// The line under the toolbar: what is shown, or what went wrong.
    QString statusText() const;

    int currentConcept() const { return m_current; }
    /// Renames a concept (empty: back to "concept <id>") and saves the names into concepts.json
    /// atomically. False (and failed()) when it could not be written.
    bool renameConcept(int id, const QString& name);

    /// The image of atlas image `index` as a file the explorer can open: the path itself, or a
    /// PNG written once into a temporary folder for Fashion-MNIST samples. Throws with a message.
    static QString imageFileOf(const explain::Atlas& atlas, int64_t index);
    /// Row `row` of the segment list: its index in Atlas::segments.
    int64_t segmentAtRow(int row) const;

    /// The kept segment (row of assignments.npy) whose tile covers a pixel of the current
    /// concept's contact sheet, or -1.
    qint64 sheetSegmentAt(QPoint sheetPixel) const;

    QListView* grid() const { return m_grid; }
    ConceptListModel* conceptModel() const { return m_model; }
    QTableView* segmentTable() const { return m_segments; }
    QCustomPlot* frequencyPlot() const { return m_frequencyPlot; }
    QCustomPlot* evidencePlot() const { return m_evidencePlot; }
    ImageView* sheetView() const { return m_sheet; }
    QProgressBar* progressBar() const { return m_progress; }

public Q_SLOTS:
    void setCurrentConcept(int id);
    /// Opens the image of a segment of the atlas (its index in Atlas::segments).
    void activateSegment(qint64 segment);
    void cancelBuild();

Q_SIGNALS:
    /// An atlas was opened, built or closed, or a concept renamed.
    void atlasChanged();
    void currentConceptChanged(int id);
    /// A build finished: `ok` false when it failed or was cancelled.
    void buildFinished(bool ok, const QString& message);
    /// Something failed; `message` says what and why.
    void failed(const QString& title, const QString& message);
    /// Open `imagePath` in the explorer and select raw cluster `segment` of `level` there.
    void segmentActivated(const QString& imagePath, int level, int segment);
    /// A job started or ended.
    void busyChanged();

private:
    struct OpenOutcome;
    void track(QFuture<void> job);
    void startOpen(const QString& dir, const QString& checkpoint, quint64 generation);
    void onOpened(quint64 generation, const OpenOutcome& outcome);
    void showBundle(AtlasBundle bundle);
    void closeAtlas(const QString& reason);
    void showConcept();
    void updateStatus();
    void setProgress(quint64 generation, int64_t done, int64_t total, const QString& stage);

    ModelFactory m_factory;
    QString m_checkpoint;
    AtlasBundle m_bundle;
    int m_current = -1;
    QString m_lastError;
    QString m_message;

    quint64 m_openGeneration = 0;
    int m_openJobs = 0;
    QString m_openingDir;  // the folder the latest read is reading
    quint64 m_buildGeneration = 0;
    bool m_buildRunning = false;
    std::shared_ptr<std::atomic<bool>> m_buildCancel;
    QList<QFuture<void>> m_jobs;  // waited for in the destructor
    bool m_activating = false;

    QPushButton* m_openButton = nullptr;
    QPushButton* m_buildButton = nullptr;
    QPushButton* m_renameButton = nullptr;
    QProgressBar* m_progress = nullptr;
    QPushButton* m_cancelButton = nullptr;
    QLabel* m_status = nullptr;
    QListView* m_grid = nullptr;
    ConceptListModel* m_model = nullptr;
    QLabel* m_title = nullptr;
    ImageView* m_sheet = nullptr;
    QCustomPlot* m_frequencyPlot = nullptr;
    QCustomPlot* m_evidencePlot = nullptr;
    QTableView* m_segments = nullptr;
    QStandardItemModel* m_segmentModel = nullptr;
};

/// The concepts of an atlas for a QListView in icon mode: DisplayRole the label, DecorationRole
/// the contact sheet's thumbnail, ToolTipRole the details, EditRole the user's name (editable).
class ConceptListModel : public QAbstractListModel {
    Q_OBJECT
public:
    /// Segments of the concept (qlonglong).
    static constexpr int SizeRole = Qt::UserRole + 1;
    /// Its class names, most frequent first (QStringList).
    static constexpr int TopClassesRole = Qt::UserRole + 2;

    explicit ConceptListModel(ConceptsView* view);
    void reset(const AtlasBundle* bundle, int thumbnail);
    void namesChanged();
    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role) override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;

private:
    ConceptsView* m_view;
    const AtlasBundle* m_bundle = nullptr;
    std::vector<QPixmap> m_thumbs;
};

}  // namespace fec::ui
