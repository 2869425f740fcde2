#include "fec/ui/concepts_view.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMetaObject>
#include <QPainter>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardItemModel>
#include <QTableView>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "fec/ui/charts.h"
#include "fec/ui/image_view.h"
#include "fec/ui/qcustomplot_wrapper.h"

namespace fec::ui {

namespace {

constexpr int kThumbnail = 124;
constexpr int kTileWidth = 180;  // three lines of text under the thumbnail

QString errorText(const std::exception& e)
{
    if (const auto* c = dynamic_cast<const c10::Error*>(&e))
        return QString::fromStdString(c->what_without_backtrace());
    return QString::fromStdString(e.what());
}

// Contact sheets, read on a worker thread (QImage is safe there).
std::vector<QImage> readSheets(const explain::Atlas& atlas, const QString& dir)
{
    std::vector<QImage> sheets;
    for (int k = 0; k < atlas.k; ++k)
        sheets.emplace_back(QDir(dir).filePath(QStringLiteral("concept_%1.png").arg(k)));
    return sheets;
}

QString className(const explain::Atlas& atlas, int64_t c)
{
    if (c >= 0 && c < static_cast<int64_t>(atlas.classNames.size()))
        return QString::fromStdString(atlas.classNames[c]);
    return c < 0 ? QObject::tr("unknown") : QObject::tr("class %1").arg(c);
}

// Classes by segment count, most frequent first, with their shares.
std::vector<std::pair<int64_t, double>> rankedClasses(const explain::ConceptSummary& c)
{
    std::vector<std::pair<int64_t, double>> out;
    const double total = std::max<double>(
        1, static_cast<double>(std::accumulate(c.classCounts.begin(), c.classCounts.end(), int64_t{0})));
    for (size_t i = 0; i < c.classCounts.size(); ++i)
        if (c.classCounts[i] > 0)
            out.emplace_back(static_cast<int64_t>(i), c.classCounts[i] / total);
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    return out;
}

QString topClassesText(const explain::Atlas& atlas, const explain::ConceptSummary& c, int n)
{
    QStringList parts;
    for (const auto& [cls, share] : rankedClasses(c)) {
        if (parts.size() == n)
            break;
        parts << QStringLiteral("%1 %2%").arg(className(atlas, cls)).arg(std::lround(share * 100));
    }
    return parts.join(QStringLiteral(" · "));
}

QString label(const explain::Atlas& atlas, int id)
{
    return QString::fromStdString(atlas.conceptLabel(id));
}

}  // namespace

// --- the grid's model ---------------------------------------------------------------------------

ConceptListModel::ConceptListModel(ConceptsView* view) : QAbstractListModel(view), m_view(view) {}

void ConceptListModel::reset(const AtlasBundle* bundle, int thumbnail)
{
    beginResetModel();
    m_bundle = bundle && bundle->atlas ? bundle : nullptr;
    m_thumbs.clear();
    if (m_bundle) {
        for (const QImage& sheet : m_bundle->sheets) {
            QPixmap thumb(thumbnail, thumbnail);
            thumb.fill(Qt::transparent);
            if (!sheet.isNull()) {
                QPainter p(&thumb);
                p.setRenderHint(QPainter::SmoothPixmapTransform);
                const QImage scaled = sheet.scaled(thumbnail, thumbnail, Qt::KeepAspectRatio, Qt::SmoothTransformation);
                p.drawImage((thumbnail - scaled.width()) / 2, (thumbnail - scaled.height()) / 2, scaled);
            }
            m_thumbs.push_back(thumb);
        }
    }
    endResetModel();
}

void ConceptListModel::namesChanged()
{
    if (rowCount() > 0)
        Q_EMIT dataChanged(index(0), index(rowCount() - 1), {Qt::DisplayRole, Qt::EditRole, Qt::ToolTipRole});
}

int ConceptListModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() || !m_bundle ? 0 : static_cast<int>(m_bundle->atlas->concepts.size());
}

QVariant ConceptListModel::data(const QModelIndex& index, int role) const
{
    if (!m_bundle || !index.isValid() || index.row() >= rowCount())
        return {};
    const auto& atlas = *m_bundle->atlas;
    const auto& c = atlas.concepts[index.row()];
    switch (role) {
    case Qt::DisplayRole:
        return tr("%1\n%2 segments · %3%\n%4")
            .arg(label(atlas, c.id))
            .arg(c.size)
            .arg(c.imageShare * 100, 0, 'f', c.imageShare < 0.1 ? 1 : 0)
            .arg(topClassesText(atlas, c, 2));
    case Qt::EditRole:
        return QString::fromStdString(c.name);
    case Qt::DecorationRole:
        return index.row() < static_cast<int>(m_thumbs.size()) ? QVariant(m_thumbs[index.row()]) : QVariant();
    case Qt::ToolTipRole:
        return tr("<b>%1</b> (concept %2)<br>%3 segments in %4% of the images, purity %5%<br>Classes: %6<br>"
                  "Double-click or F2 to rename")
            .arg(label(atlas, c.id).toHtmlEscaped())
            .arg(c.id)
            .arg(c.size)
            .arg(c.imageShare * 100, 0, 'f', 1)
            .arg(c.purity * 100, 0, 'f', 0)
            .arg(topClassesText(atlas, c, 4).toHtmlEscaped());
    case SizeRole:
        return QVariant::fromValue<qlonglong>(c.size);
    case TopClassesRole: {
        QStringList names;
        for (const auto& entry : rankedClasses(c))
            names << className(atlas, entry.first);
        return names;
    }
    default:
        return {};
    }
}

bool ConceptListModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (role != Qt::EditRole || !index.isValid() || !m_bundle)
        return false;
    return m_view->renameConcept(index.row(), value.toString());
}

Qt::ItemFlags ConceptListModel::flags(const QModelIndex& index) const
{
    if (!index.isValid())
        return Qt::NoItemFlags;
    return Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemIsEditable;
}

// --- the view ---------------------------------------------------------------------------------------

struct ConceptsView::OpenOutcome {
    AtlasBundle bundle;
    QString error;
    bool refused = false;  // another model's atlas
};

ConceptsView::ConceptsView(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(6, 4, 6, 4);

    auto* bar = new QHBoxLayout;
    m_openButton = new QPushButton(tr("Open Atlas…"), this);
    m_openButton->setToolTip(tr("Open a folder written by `fec concepts` or by Build"));
    connect(m_openButton, &QPushButton::clicked, this, &ConceptsView::chooseAndOpen);
    m_buildButton = new QPushButton(tr("Build…"), this);
    m_buildButton->setToolTip(tr("Cluster the segments of a whole dataset under the current model into concepts"));
    m_buildButton->setEnabled(false);
    connect(m_buildButton, &QPushButton::clicked, this, &ConceptsView::chooseAndBuild);
    m_renameButton = new QPushButton(tr("Rename…"), this);
    m_renameButton->setToolTip(tr("Name the selected concept (or double-click it, or press F2)"));
    m_renameButton->setEnabled(false);
    connect(m_renameButton, &QPushButton::clicked, this, [this] {
        if (!m_bundle.atlas || m_current < 0)
            return;
        bool ok = false;
        const QString name = QInputDialog::getText(
            this, tr("Rename concept"), tr("Name of concept %1 (empty: no name)").arg(m_current), QLineEdit::Normal,
            QString::fromStdString(m_bundle.atlas->concepts[m_current].name), &ok);
        if (ok)
            renameConcept(m_current, name);
    });
    m_progress = new QProgressBar(this);
    m_progress->setFixedWidth(240);
    m_progress->hide();
    m_cancelButton = new QPushButton(tr("Cancel"), this);
    m_cancelButton->setToolTip(tr("Stop building the atlas (nothing is written)"));
    m_cancelButton->hide();
    connect(m_cancelButton, &QPushButton::clicked, this, &ConceptsView::cancelBuild);
    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    for (QWidget* w : {static_cast<QWidget*>(m_openButton), static_cast<QWidget*>(m_buildButton),
                       static_cast<QWidget*>(m_renameButton), static_cast<QWidget*>(m_progress),
                       static_cast<QWidget*>(m_cancelButton)})
        bar->addWidget(w);
    bar->addWidget(m_status, 1);
    layout->addLayout(bar);

    auto* split = new QSplitter(Qt::Horizontal, this);
    m_grid = new QListView(split);
    m_grid->setViewMode(QListView::IconMode);
    m_grid->setResizeMode(QListView::Adjust);
    m_grid->setMovement(QListView::Static);
    m_grid->setWrapping(true);
    m_grid->setWordWrap(true);
    m_grid->setUniformItemSizes(true);
    m_grid->setIconSize(QSize(kThumbnail, kThumbnail));
    m_grid->setGridSize(QSize(kTileWidth, kThumbnail + 3 * fontMetrics().lineSpacing() + 14));
    m_grid->setMinimumWidth(kTileWidth + 30);
    m_grid->setToolTip(tr("The concepts: segments per concept, the share of images containing it, and its most "
                          "frequent classes. Double-click or F2 renames"));
    m_grid->setSpacing(4);
    m_grid->setSelectionMode(QAbstractItemView::SingleSelection);
    m_grid->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
    m_grid->setTextElideMode(Qt::ElideRight);
    m_model = new ConceptListModel(this);
    m_grid->setModel(m_model);
    connect(m_grid->selectionModel(), &QItemSelectionModel::currentChanged, this,
            [this](const QModelIndex& index) { setCurrentConcept(index.isValid() ? index.row() : -1); });

    auto* detail = new QWidget(split);
    auto* detailLayout = new QVBoxLayout(detail);
    detailLayout->setContentsMargins(4, 0, 0, 0);
    m_title = new QLabel(detail);
    m_title->setWordWrap(true);
    m_title->setTextFormat(Qt::RichText);
    detailLayout->addWidget(m_title);
    auto* detailSplit = new QSplitter(Qt::Vertical, detail);
    m_sheet = new ImageView(detailSplit);
    m_sheet->setPlaceholderText(tr("Select a concept"));
    m_sheet->setToolTip(tr("The concept's contact sheet: its most typical and most contributing segments, "
                           "outlined in their images. Click a tile to open its image with the segment selected"));
    // Picture pixels are reported as "input pixels" (scale 1), so a click names a place on the sheet.
    connect(m_sheet, &ImageView::inputPixelClicked, this, [this](QPoint p) {
        const qint64 segment = sheetSegmentAt(p);
        if (segment >= 0)
            activateSegment(segment);
    });
    auto* charts = new QWidget(detailSplit);
    auto* chartsLayout = new QHBoxLayout(charts);
    chartsLayout->setContentsMargins(0, 0, 0, 0);
    const auto frequency =
        createTitledPlot(charts, tr("Class frequency"), tr("share of segments"), QString(), QSize(170, 150),
                         tr("Which classes the concept's segments come from (the label of their image)"));
    const auto evidence = createTitledPlot(
        charts, tr("Class evidence"), tr("mean contribution"), QString(), QSize(150, 150),
        tr("Mean exact evidence of the concept's segments for each class: red supports it, blue speaks against it"));
    m_frequencyPlot = frequency.plot;
    m_evidencePlot = evidence.plot;
    applyChartPalette(frequency, palette());
    applyChartPalette(evidence, palette());
    chartsLayout->addWidget(m_frequencyPlot);
    chartsLayout->addWidget(m_evidencePlot);

    m_segments = new QTableView(detailSplit);
    m_segmentModel = new QStandardItemModel(0, 6, this);
    m_segmentModel->setHorizontalHeaderLabels(
        {tr("Kept as"), tr("Image"), tr("Label"), tr("Predicted"), tr("Pixels"), tr("Distance")});
    m_segments->setModel(m_segmentModel);
    m_segments->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_segments->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_segments->setSelectionMode(QAbstractItemView::SingleSelection);
    m_segments->verticalHeader()->hide();
    m_segments->horizontalHeader()->setStretchLastSection(true);
    m_segments->setToolTip(tr("The concept's typical and contributing segments: click one to open its image with "
                              "the segment selected"));
    connect(m_segments, &QTableView::activated, this,
            [this](const QModelIndex& index) { activateSegment(segmentAtRow(index.row())); });
    connect(m_segments, &QTableView::clicked, this,
            [this](const QModelIndex& index) { activateSegment(segmentAtRow(index.row())); });
    detailSplit->addWidget(m_sheet);
    detailSplit->addWidget(charts);
    detailSplit->addWidget(m_segments);
    detailSplit->setSizes({280, 220, 150});
    detailLayout->addWidget(detailSplit, 1);

    split->addWidget(m_grid);
    split->addWidget(detail);
    split->setSizes({2 * kTileWidth + 50, 350});
    layout->addWidget(split, 1);
    updateStatus();
    showConcept();
}

ConceptsView::~ConceptsView()
{
    if (m_buildCancel)
        *m_buildCancel = true;
    for (auto& job : m_jobs)
        job.waitForFinished();
}

void ConceptsView::track(QFuture<void> job)
{
    m_jobs.removeIf([](const QFuture<void>& f) { return f.isFinished(); });
    m_jobs << job;
}

void ConceptsView::setModelFactory(ModelFactory factory)
{
    m_factory = std::move(factory);
    m_buildButton->setEnabled(static_cast<bool>(m_factory));
}

void ConceptsView::setCheckpoint(const QString& path)
{
    if (path == m_checkpoint)
        return;
    m_checkpoint = path;
    // The atlas shown (or being read) must belong to the new model file: read and check it again
    // (off the GUI thread); the answer of a read started before is dropped.
    if (path.isEmpty())
        return;
    if (m_openJobs > 0 && !m_openingDir.isEmpty())
        startOpen(m_openingDir, path, ++m_openGeneration);
    else if (m_bundle.atlas)
        startOpen(m_bundle.dir, path, ++m_openGeneration);
}

bool ConceptsView::isSettled() const
{
    return m_openJobs == 0 && !m_buildRunning && !m_activating;
}

QString ConceptsView::statusText() const
{
    return m_status->text();
}

void ConceptsView::chooseAndOpen()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Open concept atlas"), m_bundle.dir);
    if (!dir.isEmpty())
        openAtlas(dir);
}

void ConceptsView::openAtlas(const QString& dir)
{
    startOpen(dir, m_checkpoint, ++m_openGeneration);
}

void ConceptsView::startOpen(const QString& dir, const QString& checkpoint, quint64 generation)
{
    ++m_openJobs;
    m_openingDir = dir;
    m_message = tr("Reading %1…").arg(QDir::toNativeSeparators(dir));
    updateStatus();
    Q_EMIT busyChanged();
    QPointer<ConceptsView> self(this);
    track(QtConcurrent::run([self, dir, checkpoint, generation] {
        OpenOutcome outcome;
        try {
            auto atlas = std::make_shared<explain::Atlas>(explain::readAtlas(dir.toStdString()));
            if (!checkpoint.isEmpty()) {
                try {
                    explain::checkAtlasModel(*atlas, checkpoint.toStdString());
                } catch (...) {
                    outcome.refused = true;
                    throw;
                }
            }
            outcome.bundle.sheets = readSheets(*atlas, dir);
            outcome.bundle.atlas = std::move(atlas);
            outcome.bundle.dir = QFileInfo(dir).absoluteFilePath();
        } catch (const std::exception& e) {
            outcome.error = errorText(e);
        } catch (...) {
            outcome.error = QStringLiteral("unknown error");
        }
        if (self)
            QMetaObject::invokeMethod(
                self.data(),
                [self, generation, outcome] {
                    if (self)
                        self->onOpened(generation, outcome);
                },
                Qt::QueuedConnection);
    }));
}

void ConceptsView::onOpened(quint64 generation, const OpenOutcome& outcome)
{
    if (--m_openJobs == 0)
        m_openingDir.clear();
    if (generation == m_openGeneration) {
        if (outcome.error.isEmpty()) {
            m_lastError.clear();
            const QString name = QFileInfo(outcome.bundle.dir).fileName();
            showBundle(outcome.bundle);
            m_message = tr("%1: %2 concepts of %3 segments in %4 images (level %5)")
                            .arg(name)
                            .arg(m_bundle.atlas->k)
                            .arg(m_bundle.atlas->segments.size())
                            .arg(m_bundle.atlas->images.size())
                            .arg(m_bundle.atlas->level);
        } else {
            m_lastError = outcome.error;
            if (outcome.refused && m_bundle.atlas) {
                closeAtlas(tr("The atlas was closed: %1").arg(outcome.error));
            } else {
                m_message = outcome.refused ? tr("Refused: %1").arg(outcome.error)
                                            : tr("Could not open the atlas: %1").arg(outcome.error);
            }
            Q_EMIT failed(outcome.refused ? tr("Atlas of another model") : tr("Could not open the atlas"),
                          outcome.error);
        }
    }
    updateStatus();
    Q_EMIT busyChanged();
}

void ConceptsView::showBundle(AtlasBundle bundle)
{
    m_bundle = std::move(bundle);
    m_current = -1;
    m_model->reset(&m_bundle, kThumbnail);
    m_renameButton->setEnabled(false);
    if (m_model->rowCount() > 0)
        m_grid->setCurrentIndex(m_model->index(0));  // selects concept 0 through currentChanged
    else
        showConcept();
    Q_EMIT atlasChanged();
}

void ConceptsView::closeAtlas(const QString& reason)
{
    m_bundle = AtlasBundle();
    m_current = -1;
    m_model->reset(nullptr, kThumbnail);
    m_message = reason;
    showConcept();
    Q_EMIT atlasChanged();
}

void ConceptsView::updateStatus()
{
    m_status->setText(m_message);
}

void ConceptsView::setCurrentConcept(int id)
{
    if (!m_bundle.atlas || id < 0 || id >= static_cast<int>(m_bundle.atlas->concepts.size()))
        id = -1;
    if (id == m_current)
        return;
    m_current = id;
    if (id >= 0 && m_grid->currentIndex().row() != id)
        m_grid->setCurrentIndex(m_model->index(id));
    m_renameButton->setEnabled(id >= 0);
    showConcept();
    Q_EMIT currentConceptChanged(id);
}

void ConceptsView::showConcept()
{
    m_frequencyPlot->clearPlottables();
    m_evidencePlot->clearPlottables();
    m_segmentModel->removeRows(0, m_segmentModel->rowCount());
    if (!m_bundle.atlas || m_current < 0) {
        m_title->setText(m_bundle.atlas ? tr("Select a concept in the grid.")
                                        : tr("No atlas: open one (File ▸ Open Concept Atlas…) or build one from a "
                                             "dataset (File ▸ Build Concept Atlas…)."));
        m_sheet->setImage(QImage());
        m_sheet->setCaption(QString());
        m_frequencyPlot->replot();
        m_evidencePlot->replot();
        return;
    }
    const auto& atlas = *m_bundle.atlas;
    const auto& c = atlas.concepts[m_current];
    m_title->setText(tr("<b>%1</b> · concept %2 of %3 · %4 segments · in %5% of the images · purity %6%")
                         .arg(label(atlas, c.id).toHtmlEscaped())
                         .arg(c.id)
                         .arg(atlas.k)
                         .arg(c.size)
                         .arg(c.imageShare * 100, 0, 'f', 1)
                         .arg(c.purity * 100, 0, 'f', 0));
    const QImage& sheet = m_current < static_cast<int>(m_bundle.sheets.size()) ? m_bundle.sheets[m_current] : QImage();
    m_sheet->setImage(sheet);
    PixelMapping sheetPixels;
    sheetPixels.inputSize = std::max(sheet.width(), sheet.height());
    m_sheet->setPixelMapping(sheetPixels);
    m_sheet->setCaption(sheet.isNull() ? tr("concept_%1.png is missing").arg(c.id) : QString());

    // Horizontal bars, one row per class (named once, on the left chart; both in the same order).
    const int classes = static_cast<int>(std::max(c.classCounts.size(), c.meanEvidence.size()));
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    for (int i = 0; i < classes; ++i)
        ticker->addTick(i + 1, className(atlas, i));
    const QColor text = palette().color(QPalette::WindowText);
    const double total = std::max<double>(
        1, static_cast<double>(std::accumulate(c.classCounts.begin(), c.classCounts.end(), int64_t{0})));
    QVector<double> keys, shares;
    for (int i = 0; i < static_cast<int>(c.classCounts.size()); ++i) {
        keys << i + 1;
        shares << c.classCounts[i] / total;
    }
    auto* frequency = new QCPBars(m_frequencyPlot->yAxis, m_frequencyPlot->xAxis);
    frequency->setWidth(0.7);
    frequency->setBrush(QColor(90, 140, 200));
    frequency->setPen(Qt::NoPen);
    frequency->setData(keys, shares, true);
    QVector<double> pk, pv, nk, nv;
    double lo = 0, hi = 0;
    for (int i = 0; i < static_cast<int>(c.meanEvidence.size()); ++i) {
        const double v = c.meanEvidence[i];
        (v >= 0 ? pk : nk) << i + 1;
        (v >= 0 ? pv : nv) << v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    auto* positive = new QCPBars(m_evidencePlot->yAxis, m_evidencePlot->xAxis);
    positive->setWidth(0.7);
    positive->setBrush(QColor(214, 96, 77));
    positive->setPen(Qt::NoPen);
    positive->setData(pk, pv, true);
    auto* negative = new QCPBars(m_evidencePlot->yAxis, m_evidencePlot->xAxis);
    negative->setWidth(0.7);
    negative->setBrush(QColor(67, 147, 195));
    negative->setPen(Qt::NoPen);
    negative->setData(nk, nv, true);
    for (QCustomPlot* plot : {m_frequencyPlot, m_evidencePlot}) {
        plot->yAxis->setTicker(ticker);
        plot->yAxis->setTickLabelColor(text);
        plot->yAxis->setRangeReversed(true);  // the first class on top
        plot->yAxis->setRange(0.3, classes + 0.7);
        plot->xAxis->ticker()->setTickCount(3);
    }
    m_evidencePlot->yAxis->setTickLabels(false);
    double top = 0;
    for (double s : shares)
        top = std::max(top, s);
    m_frequencyPlot->xAxis->setRange(0, std::max(0.05, top * 1.08));
    const double pad = std::max(1e-6, (hi - lo) * 0.06);
    m_evidencePlot->xAxis->setRange(lo - pad, hi + pad);
    m_frequencyPlot->replot();
    m_evidencePlot->replot();

    // The kept segments: typical first, then contributing ones not already listed.
    auto addRow = [&](int64_t s, const QString& kind) {
        if (s < 0 || s >= static_cast<int64_t>(atlas.segments.size()))
            return;
        const auto& seg = atlas.segments[s];
        const QString image = seg.image >= 0 && seg.image < static_cast<int64_t>(atlas.images.size())
                                  ? QString::fromStdString(atlas.images[seg.image])
                                  : QString();
        const int64_t labelOf = seg.image < static_cast<int64_t>(atlas.labels.size()) ? atlas.labels[seg.image] : -1;
        const int64_t predicted =
            seg.image < static_cast<int64_t>(atlas.predicted.size()) ? atlas.predicted[seg.image] : -1;
        QList<QStandardItem*> row;
        row << new QStandardItem(kind);
        auto* name = new QStandardItem(image.startsWith(QLatin1String("idx:")) ? image : QFileInfo(image).fileName());
        name->setToolTip(tr("%1\nlevel %2, segment %3, box (%4, %5)–(%6, %7)")
                             .arg(image)
                             .arg(seg.level)
                             .arg(seg.segment)
                             .arg(seg.x0)
                             .arg(seg.y0)
                             .arg(seg.x1)
                             .arg(seg.y1));
        row << name;
        row << new QStandardItem(className(atlas, labelOf));
        row << new QStandardItem(className(atlas, predicted));
        auto* pixels = new QStandardItem;
        pixels->setData(QVariant::fromValue<qlonglong>(seg.pixels), Qt::DisplayRole);
        row << pixels;
        row << new QStandardItem(QString::number(seg.distance, 'f', 3));
        row.first()->setData(QVariant::fromValue<qlonglong>(s), Qt::UserRole);
        m_segmentModel->appendRow(row);
    };
    for (int64_t s : c.typical)
        addRow(s, tr("typical"));
    for (int64_t s : c.contributing)
        if (std::find(c.typical.begin(), c.typical.end(), s) == c.typical.end())
            addRow(s, tr("contributing"));
    m_segments->resizeColumnsToContents();
}

int64_t ConceptsView::segmentAtRow(int row) const
{
    if (row < 0 || row >= m_segmentModel->rowCount())
        return -1;
    return m_segmentModel->item(row, 0)->data(Qt::UserRole).toLongLong();
}

bool ConceptsView::renameConcept(int id, const QString& name)
{
    if (!m_bundle.atlas || id < 0 || id >= static_cast<int>(m_bundle.atlas->concepts.size()))
        return false;
    const QString trimmed = name.trimmed();
    std::vector<std::string> names;
    for (const auto& c : m_bundle.atlas->concepts)
        names.push_back(c.id == id ? trimmed.toStdString() : c.name);
    try {
        explain::writeConceptNames(m_bundle.dir.toStdString(), names);
    } catch (const std::exception& e) {
        m_lastError = errorText(e);
        Q_EMIT failed(tr("Could not rename the concept"), m_lastError);
        return false;
    }
    m_bundle.atlas->concepts[id].name = trimmed.toStdString();
    // writeConceptNames redrew the sheet's title line with the new name.
    if (id < static_cast<int>(m_bundle.sheets.size()))
        if (QImage sheet(QDir(m_bundle.dir).filePath(QStringLiteral("concept_%1.png").arg(id))); !sheet.isNull())
            m_bundle.sheets[id] = sheet;
    m_model->namesChanged();
    if (id == m_current)
        showConcept();
    Q_EMIT atlasChanged();
    return true;
}

QString ConceptsView::imageFileOf(const explain::Atlas& atlas, int64_t index)
{
    if (index < 0 || index >= static_cast<int64_t>(atlas.images.size()))
        throw std::out_of_range("image " + std::to_string(index) + " is not in the atlas");
    const std::string& image = atlas.images[index];
    if (image.rfind("idx:", 0) != 0) {
        if (!QFileInfo::exists(QString::fromStdString(image)))
            throw std::runtime_error(image + ": no such file (was the dataset moved?)");
        return QString::fromStdString(image);
    }
    // A Fashion-MNIST sample: written once as a PNG the explorer can open.
    const int64_t sample = std::stoll(image.substr(4));
    const QString split = QString::fromStdString(atlas.split.empty() ? std::string("test") : atlas.split);
    const QString folder = QDir::temp().filePath(QStringLiteral("fec-explorer-atlas"));
    const QString path = QDir(folder).filePath(QStringLiteral("fashion-mnist-%1-%2-%3.png")
                                                   .arg(qHash(QString::fromStdString(atlas.data)), 0, 16)
                                                   .arg(split)
                                                   .arg(sample));
    if (QFileInfo::exists(path))
        return path;
    const train::Sample s = explain::openAtlasImages(atlas)->get(index);
    const at::Tensor pixels = (s.image.scalar_type() == at::kByte ? s.image : (s.image * 255).round().clamp(0, 255))
                                  .to(at::kByte)
                                  .contiguous();
    const int h = static_cast<int>(pixels.size(0)), w = static_cast<int>(pixels.size(1));
    const int channels = static_cast<int>(pixels.size(2));
    QImage out(w, h, channels == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888);
    for (int y = 0; y < h; ++y)
        std::memcpy(out.scanLine(y), pixels.data_ptr<uint8_t>() + static_cast<int64_t>(y) * w * channels,
                    static_cast<size_t>(w) * channels);
    QDir().mkpath(folder);
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly) || !out.save(&file, "PNG") || !file.commit())
        throw std::runtime_error("cannot write " + path.toStdString() + ": " + file.errorString().toStdString());
    return path;
}

qint64 ConceptsView::sheetSegmentAt(QPoint sheetPixel) const
{
    if (!m_bundle.atlas || m_current < 0 || m_current >= static_cast<int>(m_bundle.atlas->concepts.size()))
        return -1;
    for (const auto& tile : explain::contactSheetTiles(m_bundle.atlas->concepts[static_cast<size_t>(m_current)]))
        if (QRect(tile.x, tile.y, tile.width, tile.height).contains(sheetPixel))
            return tile.segment;
    return -1;
}

void ConceptsView::activateSegment(qint64 segment)
{
    if (!m_bundle.atlas || segment < 0 || segment >= static_cast<qint64>(m_bundle.atlas->segments.size()))
        return;
    const auto atlas = m_bundle.atlas;
    const auto seg = atlas->segments[segment];
    m_activating = true;
    Q_EMIT busyChanged();
    QPointer<ConceptsView> self(this);
    track(QtConcurrent::run([self, atlas, seg] {
        QString path, error;
        try {
            path = imageFileOf(*atlas, seg.image);
        } catch (const std::exception& e) {
            error = errorText(e);
        }
        if (self)
            QMetaObject::invokeMethod(
                self.data(),
                [self, path, error, seg] {
                    if (!self)
                        return;
                    self->m_activating = false;
                    Q_EMIT self->busyChanged();
                    if (!error.isEmpty())
                        Q_EMIT self->failed(tr("Could not open the segment's image"), error);
                    else
                        Q_EMIT self->segmentActivated(path, seg.level, seg.segment);
                },
                Qt::QueuedConnection);
    }));
}

void ConceptsView::chooseAndBuild()
{
    if (!m_factory) {
        Q_EMIT failed(tr("Cannot build a concept atlas"), tr("Load a model first."));
        return;
    }
    QDialog dialog(this);
    dialog.setWindowTitle(tr("Build concept atlas"));
    auto* form = new QFormLayout(&dialog);
    auto pathRow = [&dialog](QLineEdit* edit, const QString& title) {
        auto* row = new QHBoxLayout;
        row->addWidget(edit, 1);
        auto* browse = new QPushButton(tr("Browse…"), &dialog);
        QObject::connect(browse, &QPushButton::clicked, &dialog, [&dialog, edit, title] {
            const QString dir = QFileDialog::getExistingDirectory(&dialog, title, edit->text());
            if (!dir.isEmpty())
                edit->setText(dir);
        });
        row->addWidget(browse);
        return row;
    };
    auto* data = new QLineEdit(QStringLiteral("/usr/share/datasets/fashion-mnist"), &dialog);
    data->setToolTip(tr("An image folder (ROOT/<class>/<image>) or the folder of Fashion-MNIST's IDX files"));
    form->addRow(tr("Data"), pathRow(data, tr("Dataset folder")));
    auto* split = new QComboBox(&dialog);
    split->addItems({QStringLiteral("test"), QStringLiteral("train")});
    split->setToolTip(tr("Fashion-MNIST split"));
    form->addRow(tr("Split"), split);
    auto* limit = new QSpinBox(&dialog);
    limit->setRange(0, 10000000);
    limit->setValue(2000);
    limit->setSpecialValueText(tr("all"));
    limit->setToolTip(tr("Images used (0: all)"));
    form->addRow(tr("Images"), limit);
    auto* k = new QSpinBox(&dialog);
    k->setRange(2, 1024);
    k->setValue(32);
    form->addRow(tr("Concepts (K)"), k);
    auto* level = new QSpinBox(&dialog);
    level->setRange(0, 3);
    level->setSpecialValueText(tr("last"));
    form->addRow(tr("Level"), level);
    auto* out = new QLineEdit(QDir::home().filePath(QStringLiteral("fec-atlas")), &dialog);
    form->addRow(tr("Write into"), pathRow(out, tr("Atlas folder")));
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &dialog);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Build"));
    connect(buttons, &QDialogButtonBox::accepted, &dialog, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
    form->addRow(buttons);
    if (dialog.exec() != QDialog::Accepted)
        return;
    AtlasBuildRequest request;
    request.data = data->text().trimmed();
    request.split = split->currentText();
    request.limit = limit->value();
    request.outDir = out->text().trimmed();
    request.options.k = k->value();
    request.options.level = level->value();
    buildAtlas(request);
}

void ConceptsView::cancelBuild()
{
    if (m_buildCancel)
        *m_buildCancel = true;
    if (!m_buildRunning)
        return;
    ++m_buildGeneration;  // whatever the cancelled job still reports is dropped
    m_buildRunning = false;
    m_progress->hide();
    m_cancelButton->hide();
    m_message = tr("Build cancelled: nothing was written.");
    updateStatus();
    Q_EMIT buildFinished(false, m_message);
    Q_EMIT busyChanged();
}

void ConceptsView::setProgress(quint64 generation, int64_t done, int64_t total, const QString& stage)
{
    if (generation != m_buildGeneration || !m_buildRunning)
        return;
    m_progress->setRange(0, static_cast<int>(std::max<int64_t>(1, total)));
    m_progress->setValue(static_cast<int>(std::min(done, total)));
    m_progress->setFormat(tr("%1 %2 / %3").arg(stage).arg(done).arg(total));
}

void ConceptsView::buildAtlas(const AtlasBuildRequest& request)
{
    if (!m_factory) {
        Q_EMIT failed(tr("Cannot build a concept atlas"), tr("Load a model first."));
        return;
    }
    if (m_buildRunning)
        cancelBuild();
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    m_buildCancel = cancel;
    const quint64 generation = ++m_buildGeneration;
    m_buildRunning = true;
    m_progress->setRange(0, 0);
    m_progress->setFormat(tr("loading the model…"));
    m_progress->show();
    m_cancelButton->show();
    m_message = tr("Building an atlas of %1 into %2…")
                    .arg(QDir::toNativeSeparators(request.data), QDir::toNativeSeparators(request.outDir));
    updateStatus();
    Q_EMIT busyChanged();
    QPointer<ConceptsView> self(this);
    const ModelFactory factory = m_factory;
    track(QtConcurrent::run([self, factory, request, cancel, generation] {
        OpenOutcome outcome;
        bool cancelled = false;
        try {
            const BuildModel model = factory();
            if (!model.model)
                throw std::runtime_error("no model is loaded");
            const train::DatasetPtr data =
                explain::openAtlasData(request.data.toStdString(), request.split.toStdString(), request.limit,
                                       request.options.seed, model.classNames);
            const auto progress = [&](int64_t done, int64_t total, const std::string& stage) {
                if (self)
                    QMetaObject::invokeMethod(
                        self.data(),
                        [self, generation, done, total, stage = QString::fromStdString(stage)] {
                            if (self)
                                self->setProgress(generation, done, total, stage);
                        },
                        Qt::QueuedConnection);
            };
            auto atlas = std::make_shared<explain::Atlas>(explain::buildAtlas(*model.model, model.info,
                                                                              model.checkpoint, model.device, data,
                                                                              request.options, progress, cancel.get()));
            progress(0, atlas->k, "writing");
            const std::string dir = request.outDir.toStdString();
            explain::writeAtlas(*atlas, dir, *model.model, model.device, data, cancel.get());
            // What the folder now holds, exactly as a later open would show it.
            auto written = std::make_shared<explain::Atlas>(explain::readAtlas(dir));
            outcome.bundle.sheets = readSheets(*written, request.outDir);
            outcome.bundle.atlas = std::move(written);
            outcome.bundle.dir = QFileInfo(request.outDir).absoluteFilePath();
        } catch (const explain::AtlasCancelled&) {
            cancelled = true;
        } catch (const std::exception& e) {
            if (*cancel)
                cancelled = true;
            else
                outcome.error = errorText(e);
        } catch (...) {
            outcome.error = QStringLiteral("unknown error");
        }
        if (!self)
            return;
        QMetaObject::invokeMethod(
            self.data(),
            [self, generation, outcome, cancelled] {
                if (!self || generation != self->m_buildGeneration || !self->m_buildRunning)
                    return;
                self->m_buildRunning = false;
                self->m_progress->hide();
                self->m_cancelButton->hide();
                if (cancelled) {
                    self->m_message = tr("Build cancelled: nothing was written.");
                    Q_EMIT self->buildFinished(false, self->m_message);
                } else if (!outcome.error.isEmpty()) {
                    self->m_lastError = outcome.error;
                    self->m_message = tr("The atlas could not be built: %1").arg(outcome.error);
                    Q_EMIT self->failed(tr("Could not build the concept atlas"), outcome.error);
                    Q_EMIT self->buildFinished(false, self->m_message);
                } else {
                    self->m_lastError.clear();
                    ++self->m_openGeneration;  // an open still reading loses to the new atlas
                    self->showBundle(outcome.bundle);
                    const auto& a = *self->m_bundle.atlas;
                    self->m_message =
                        tr("Built %1: %2 concepts of %3 segments in %4 images (level %5)%6")
                            .arg(QFileInfo(self->m_bundle.dir).fileName())
                            .arg(a.k)
                            .arg(a.segments.size())
                            .arg(a.images.size())
                            .arg(a.level)
                            .arg(a.skipped.empty() ? QString()
                                                   : tr("; %1 unreadable images skipped").arg(a.skipped.size()));
                    Q_EMIT self->buildFinished(true, self->m_message);
                }
                self->updateStatus();
                Q_EMIT self->busyChanged();
            },
            Qt::QueuedConnection);
    }));
}

}  // namespace fec::ui
