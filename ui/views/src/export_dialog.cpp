#include "fec/ui/export_dialog.h"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

#include <QApplication>
#include <QButtonGroup>
#include <QCheckBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPainter>
#include <QPdfWriter>
#include <QProgressDialog>
#include <QPushButton>
#include <QRadioButton>
#include <QSaveFile>
#include <QSettings>
#include <QSpinBox>
#include <QSvgGenerator>
#include <QVBoxLayout>

#include "fec/analysis.h"
#include "fec/atomic_file.h"
#include "fec/explain/explain.h"
#include "fec/explain/segment_evidence.h"
#include "fec/figure/figure.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/tensor_io.h"
#include "fec/ui/evidence_view.h"

namespace fec::ui {

namespace {

// Concept id of every model-input pixel of the panel's level (-1 where no segment is).
at::Tensor conceptLabels(const explain::Explanation& e, const ConceptPanelRequest& c)
{
    at::Tensor labels = explain::levelSegmentation(e.pyramid, c.level).labels.to(at::kInt).contiguous().clone();
    int32_t* p = labels.data_ptr<int32_t>();
    for (int64_t i = 0; i < labels.numel(); ++i)
        p[i] = p[i] >= 0 && p[i] < static_cast<int32_t>(c.segmentConcepts.size())
                   ? c.segmentConcepts[static_cast<size_t>(p[i])]
                   : -1;
    return labels;
}

// `labels`: conceptLabels(e, c).
figure::FigurePanel conceptPanelOf(const explain::Explanation& e, const ConceptPanelRequest& c,
                                   const at::Tensor& labels)
{
    // Label i is drawn in palette colour i: the colours of the Pyramid view's Concepts toggle.
    const cv::Mat out = imaging::overlay(e.image, labels, e.prepared.mapping, imaging::OverlayStyle{});
    return {QObject::tr("Concepts · level %1").arg(c.level), figure::toQImage(out)};
}

// The concepts of the panel with their colours, the largest area first (at most 8).
figure::FigureLegend conceptLegend(const ConceptPanelRequest& c, const at::Tensor& labels)
{
    std::map<int32_t, int64_t> area;
    const int32_t* p = labels.data_ptr<int32_t>();
    for (int64_t i = 0; i < labels.numel(); ++i)
        if (p[i] >= 0)
            ++area[p[i]];
    std::vector<std::pair<int64_t, int32_t>> ranked;
    for (const auto& [id, n] : area)
        ranked.emplace_back(-n, id);
    std::sort(ranked.begin(), ranked.end());
    figure::FigureLegend legend;
    for (size_t i = 0; i < ranked.size() && i < 8; ++i) {
        const auto rgb = imaging::paletteColour(ranked[i].second);
        legend.entries.emplace_back(QColor(rgb[0], rgb[1], rgb[2]), c.names[static_cast<size_t>(ranked[i].second)]);
    }
    if (ranked.size() > 8)
        legend.entries.emplace_back(QColor(Qt::transparent), QObject::tr("and %1 more").arg(ranked.size() - 8));
    return legend;
}

QString formatOf(const QString& path)
{
    const QString ext = QFileInfo(path).suffix().toLower();
    return ext == QLatin1String("png") || ext == QLatin1String("svg") || ext == QLatin1String("pdf") ? ext : QString();
}

[[noreturn]] void fail(const QString& path, const QString& why)
{
    throw std::runtime_error((path + ": " + why).toStdString());
}

// The current view as an image file; vector formats embed the picture at the chosen DPI.
void writeView(const QImage& view, const QString& path, int dpi)
{
    if (view.isNull())
        fail(path, QStringLiteral("there is no current view to export"));
    const QString format = formatOf(path);
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        fail(path, QStringLiteral("cannot write: ") + file.errorString());
    if (format == QLatin1String("png")) {
        QImage image = view;
        image.setDotsPerMeterX(qRound(dpi / 0.0254));
        image.setDotsPerMeterY(qRound(dpi / 0.0254));
        if (!image.save(&file, "PNG"))
            fail(path, QStringLiteral("cannot encode the PNG"));
    } else if (format == QLatin1String("svg")) {
        QSvgGenerator svg;
        svg.setOutputDevice(&file);
        svg.setSize(view.size());
        svg.setViewBox(QRect(QPoint(0, 0), view.size()));
        svg.setResolution(dpi);
        svg.setTitle(QStringLiteral("FEC Explorer view"));
        QPainter painter;
        if (!painter.begin(&svg))
            fail(path, QStringLiteral("cannot start the SVG"));
        painter.drawImage(QPoint(0, 0), view);
        painter.end();
    } else {
        QPdfWriter pdf(&file);
        pdf.setResolution(dpi);
        pdf.setPageSize(QPageSize(QSizeF(view.width() * 72.0 / dpi, view.height() * 72.0 / dpi), QPageSize::Point,
                                  QString(), QPageSize::ExactMatch));
        pdf.setPageMargins(QMarginsF(0, 0, 0, 0));
        pdf.setCreator(QStringLiteral("FEC Explorer"));
        QPainter painter;
        if (!painter.begin(&pdf))
            fail(path, QStringLiteral("cannot start the PDF"));
        painter.drawImage(QRect(0, 0, pdf.width(), pdf.height()), view);
        painter.end();
    }
    if (!file.commit())
        fail(path, QStringLiteral("cannot write: ") + file.errorString());
}

}  // namespace

std::vector<int> ExportDialog::parseKs(const QString& text, int maxK, QString* error)
{
    std::vector<int> ks;
    const auto setError = [&](const QString& e) {
        if (error)
            *error = e;
        return std::vector<int>{};
    };
    if (error)
        error->clear();
    const QString trimmed = text.trimmed();
    if (trimmed.isEmpty())
        return ks;
    for (const QString& item : trimmed.split(QLatin1Char(','))) {
        bool ok = false;
        const int k = item.trimmed().toInt(&ok);
        if (!ok)
            return setError(tr("'%1' is not a whole number.").arg(item.trimmed()));
        if (maxK < 2)
            return setError(tr("K-means needs at least 2 final clusters; this result has %1.").arg(maxK));
        if (k < 2 || k > maxK)
            return setError(tr("k = %1 is out of range: choose k from 2 to %2.").arg(k).arg(maxK));
        if (std::find(ks.begin(), ks.end(), k) == ks.end())
            ks.push_back(k);
    }
    return ks;
}

QString ExportDialog::defaultFileName(const ExplainResult& result, ExportRequest::Kind kind)
{
    QString stem = QFileInfo(result.imagePath).completeBaseName();
    if (stem.isEmpty())
        stem = QStringLiteral("image");
    return stem +
           (kind == ExportRequest::Kind::Figure ? QStringLiteral("_fec_figure.png") : QStringLiteral("_fec_view.png"));
}

void ExportDialog::exportTo(const ExplainResult& result, const QImage& currentView, const ExportRequest& request)
{
    exportTo(result, currentView, request, ExportProgress());
}

QStringList ExportDialog::exportTo(const ExplainResult& result, const QImage& currentView, const ExportRequest& request,
                                   const ExportProgress& progress)
{
    const QString& path = request.path;
    if (path.isEmpty())
        throw std::runtime_error("no file name given for the export");
    if (formatOf(path).isEmpty())
        fail(path, QStringLiteral("unknown format; use a .png, .svg or .pdf file name"));
    if (request.dpi < 50 || request.dpi > 1200)
        fail(path, QStringLiteral("resolution %1 dpi is outside 50 to 1200").arg(request.dpi));
    const QFileInfo info(path);
    if (!info.absoluteDir().exists())
        fail(path, QStringLiteral("the folder %1 does not exist").arg(QDir::toNativeSeparators(info.absolutePath())));
    const bool figureKind = request.kind == ExportRequest::Kind::Figure;
    const bool evidenceRow = figureKind && request.evidence.has_value();
    if (evidenceRow) {
        if (!result.evidence.contributions.defined())
            fail(path, QStringLiteral("the model has no classifier head, so the figure can have no evidence row"));
        const int64_t classes = result.evidence.contributions.size(1);
        const auto& ev = *request.evidence;
        const bool targetBad = ev.target < 0 || ev.target >= classes;
        if (targetBad || ev.versus < -1 || ev.versus >= classes)
            fail(path, QStringLiteral("evidence row: class %1 does not exist (the model has classes 0 to %2)")
                           .arg(targetBad ? ev.target : ev.versus)
                           .arg(classes - 1));
    }
    const auto& pyramid = result.pyramid;
    const int levelCount = pyramid.levelCount();
    const bool conceptPanel = figureKind && request.concepts.has_value();
    if (conceptPanel) {
        const auto& c = *request.concepts;
        if (c.level < 1 || c.level > levelCount)
            fail(path, QStringLiteral("concepts panel: level %1 does not exist (the model has levels 1 to %2)")
                           .arg(c.level)
                           .arg(levelCount));
        if (c.segmentConcepts.size() != pyramid.levels[static_cast<size_t>(c.level - 1)].nonEmpty.size())
            fail(path, QStringLiteral("concepts panel: %1 concepts given for the %2 segments of level %3")
                           .arg(c.segmentConcepts.size())
                           .arg(pyramid.levels[static_cast<size_t>(c.level - 1)].nonEmpty.size())
                           .arg(c.level));
        for (int32_t id : c.segmentConcepts)
            if (id < 0 || id >= static_cast<int32_t>(c.names.size()))
                fail(path,
                     QStringLiteral("concepts panel: concept %1 has no name (%2 names)").arg(id).arg(c.names.size()));
    }
    if (figureKind)
        for (int l : request.levels)
            if (l < 1 || l > levelCount)
                fail(path,
                     QStringLiteral("level %1 does not exist (the model has levels 1 to %2)").arg(l).arg(levelCount));

    // K-means: the result's own merger keeps the colours the user sees on screen.
    std::shared_ptr<imaging::ClusterMerger> merger = result.merger;
    const bool needKs = !request.ks.empty() && (figureKind || request.writeData);
    if (needKs && !merger) {
        try {
            merger = std::make_shared<imaging::ClusterMerger>(pyramid);
        } catch (const std::exception& e) {
            fail(path, QStringLiteral("K-means is not available: ") + e.what());
        }
    }
    if (needKs)
        for (int k : request.ks)
            if (k < 2 || k > merger->maxK())
                fail(path, QStringLiteral("k = %1 is out of range (2 to %2)").arg(k).arg(merger->maxK()));

    const int total = (figureKind ? 2 + static_cast<int>(request.levels.size() + request.ks.size()) : 1) +
                      (evidenceRow ? 1 : 0) + (conceptPanel ? 1 : 0) +
                      (request.writeData ? 2 + static_cast<int>(request.ks.size()) : 0);
    int done = 0;
    const auto step = [&](const QString& what) { return !progress || progress(done++, total, what); };

    QStringList written;
    const QString dir = info.absolutePath();
    if (figureKind) {
        // Same panels, titles and overlay style as `fec explain`.
        if (result.image.empty())
            fail(path, QStringLiteral("the result has no image"));
        const QString label =
            result.imagePath.isEmpty() ? QStringLiteral("image") : QFileInfo(result.imagePath).fileName();
        bool cancelled = false;
        const auto drawStep = [&](const QString& what) {
            cancelled = !step(what);
            return !cancelled;
        };
        figure::FigureRow row;
        if (merger == result.merger) {
            row = figure::explanationRow(result, label, request.levels, request.ks, {}, drawStep);
        } else {
            // No K-means in the result: draw the merges with the merger made above.
            explain::Explanation withMerger = result;
            withMerger.merger = merger;
            row = figure::explanationRow(withMerger, label, request.levels, request.ks, {}, drawStep);
        }
        if (cancelled)
            return {};
        if (conceptPanel) {
            if (!step(QObject::tr("Drawing the concepts")))
                return {};
            const at::Tensor labels = conceptLabels(result, *request.concepts);
            row.panels.push_back(conceptPanelOf(result, *request.concepts, labels));
            row.legend = conceptLegend(*request.concepts, labels);
        }
        std::vector<figure::FigureRow> rows{std::move(row)};
        if (evidenceRow) {
            const auto& ev = *request.evidence;
            const QString what =
                ev.versusName.isEmpty() ? ev.className : QObject::tr("%1 versus %2").arg(ev.className, ev.versusName);
            if (!step(QObject::tr("Drawing the evidence for %1").arg(what)))
                return {};
            try {
                // Without a report: the exact part, which needs no model (milliseconds).
                const auto report = ev.report ? ev.report
                                              : std::make_shared<const explain::EvidenceReport>(
                                                    explain::exactSegmentEvidence(result, ev.target, ev.versus));
                rows.push_back(
                    figure::evidenceRow(result, *report, QObject::tr("Evidence"), ev.className, ev.versusName));
            } catch (const std::exception& e) {
                fail(path, QStringLiteral("cannot draw the evidence row: ") + e.what());
            }
        }
        if (!step(QObject::tr("Writing %1").arg(info.fileName())))
            return {};
        figure::FigureOptions options;
        options.dpi = request.dpi;
        figure::writeFigure(rows, path, options);
    } else {
        if (!step(QObject::tr("Writing %1").arg(info.fileName())))
            return {};
        writeView(currentView, path, request.dpi);
    }
    written << path;

    if (request.writeData) {
        const auto file = [&](const QString& name) { return QDir(dir).filePath(name); };
        if (!step(QObject::tr("Writing levels.npy")))
            return {};
        saveNpy(file(QStringLiteral("levels.npy")).toStdString(), pyramid.allPixelLabels());
        written << file(QStringLiteral("levels.npy"));
        for (int k : request.ks) {
            const QString name = QStringLiteral("kmeans_k%1.npy").arg(k);
            if (!step(QObject::tr("Writing %1").arg(name)))
                return {};
            saveNpy(file(name).toStdString(), explain::kmeansSegmentation(*merger, k).labels);
            written << file(name);
        }
        if (!step(QObject::tr("Writing hierarchy.json")))
            return {};
        writeFileAtomic(file(QStringLiteral("hierarchy.json")).toStdString(), hierarchyJson(pyramid) + "\n");
        written << file(QStringLiteral("hierarchy.json"));
    }
    if (progress)
        progress(total, total, QObject::tr("Done"));
    return written;
}

struct ExportDialog::Private {
    ExplainResultPtr result;
    QImage view;
    QRadioButton* viewButton = nullptr;
    QRadioButton* figureButton = nullptr;
    QLineEdit* path = nullptr;
    QSpinBox* dpi = nullptr;
    QGroupBox* figureBox = nullptr;
    std::vector<QCheckBox*> levels;
    QLineEdit* ks = nullptr;
    QLabel* ksHint = nullptr;
    QCheckBox* evidence = nullptr;
    std::optional<EvidenceRowRequest> evidenceOffer;
    QCheckBox* concepts = nullptr;
    std::optional<ConceptPanelRequest> conceptsOffer;
    QCheckBox* data = nullptr;
    QLabel* error = nullptr;
    QPushButton* exportButton = nullptr;
    QString confirmedPath;  // chosen in a file dialog, which already asked about overwriting
    int maxK = 0;
};

ExportDialog::ExportDialog(ExplainResultPtr result, QImage currentView, QWidget* parent)
    : QDialog(parent), d(std::make_unique<Private>())
{
    d->result = std::move(result);
    d->view = std::move(currentView);
    setWindowTitle(tr("Export"));
    if (d->result) {
        if (d->result->merger)
            d->maxK = d->result->merger->maxK();
        else if (d->result->pyramid.levelCount() > 0)
            d->maxK = static_cast<int>(d->result->pyramid.levels.back().nonEmpty.size());
    }

    auto* layout = new QVBoxLayout(this);
    auto* form = new QFormLayout;
    auto* kindRow = new QHBoxLayout;
    d->viewButton = new QRadioButton(tr("&Current view"), this);
    d->figureButton = new QRadioButton(tr("&Paper figure (image, levels, K-means)"), this);
    d->viewButton->setEnabled(!d->view.isNull());
    d->viewButton->setToolTip(d->view.isNull() ? tr("No view to export")
                                               : tr("%1x%2 pixels").arg(d->view.width()).arg(d->view.height()));
    auto* kinds = new QButtonGroup(this);
    kinds->addButton(d->viewButton);
    kinds->addButton(d->figureButton);
    kindRow->addWidget(d->figureButton);
    kindRow->addWidget(d->viewButton);
    kindRow->addStretch(1);
    form->addRow(tr("Export:"), kindRow);

    auto* pathRow = new QHBoxLayout;
    d->path = new QLineEdit(this);
    d->path->setMinimumWidth(360);
    d->path->setToolTip(tr("The extension decides the format: .png, .svg or .pdf"));
    auto* browse = new QPushButton(tr("&Browse…"), this);
    pathRow->addWidget(d->path, 1);
    pathRow->addWidget(browse);
    auto* fileLabel = new QLabel(tr("&File:"), this);
    fileLabel->setBuddy(d->path);
    form->addRow(fileLabel, pathRow);

    d->dpi = new QSpinBox(this);
    d->dpi->setRange(50, 1200);
    d->dpi->setValue(300);
    d->dpi->setSuffix(tr(" dpi"));
    form->addRow(tr("&Resolution:"), d->dpi);
    layout->addLayout(form);

    d->figureBox = new QGroupBox(tr("Figure panels"), this);
    auto* figureForm = new QFormLayout(d->figureBox);
    auto* levelsRow = new QHBoxLayout;
    if (d->result)
        for (const auto& lv : d->result->pyramid.levels) {
            auto* box = new QCheckBox(tr("Level %1").arg(lv.level), d->figureBox);
            box->setToolTip(tr("%1x%2 centres, %3 non-empty").arg(lv.gridH).arg(lv.gridW).arg(lv.nonEmpty.size()));
            box->setChecked(true);
            levelsRow->addWidget(box);
            d->levels.push_back(box);
        }
    levelsRow->addStretch(1);
    figureForm->addRow(tr("Levels:"), levelsRow);
    d->ks = new QLineEdit(this);
    d->ks->setPlaceholderText(tr("e.g. 3,5"));
    d->ksHint = new QLabel(d->maxK >= 2 ? tr("comma-separated, 2 to %1").arg(d->maxK) : tr("not available"), this);
    auto* ksRow = new QHBoxLayout;
    ksRow->addWidget(d->ks, 1);
    ksRow->addWidget(d->ksHint);
    auto* ksLabel = new QLabel(tr("K-means &k:"), d->figureBox);
    ksLabel->setBuddy(d->ks);
    figureForm->addRow(ksLabel, ksRow);
    d->evidence = new QCheckBox(d->figureBox);
    figureForm->addRow(tr("Evidence:"), d->evidence);
    if (d->result && d->result->evidence.contributions.defined()) {
        EvidenceRowRequest top;
        top.target = d->result->top.empty() ? 0 : d->result->top.front().index;
        top.className =
            d->result->topClasses.empty() ? tr("class %1").arg(top.target) : d->result->topClasses.front().first;
        offerEvidenceRow(top, false);
    } else {
        d->evidence->setText(tr("Evidence row"));
        d->evidence->setEnabled(false);
        d->evidence->setToolTip(d->result ? tr("This model has no classifier head: there is no logit to split")
                                          : tr("There is no result yet"));
    }
    d->concepts = new QCheckBox(tr("Concepts panel"), d->figureBox);
    d->concepts->setEnabled(false);
    d->concepts->setToolTip(tr("Open a concept atlas and turn on Concepts in the Pyramid view to add a panel with "
                               "each segment's concept"));
    figureForm->addRow(tr("Concepts:"), d->concepts);
    layout->addWidget(d->figureBox);

    d->data =
        new QCheckBox(tr("Also write &data next to the file (levels.npy, kmeans_k<k>.npy, hierarchy.json)"), this);
    layout->addWidget(d->data);
    d->error = new QLabel(this);
    d->error->setWordWrap(true);
    QPalette errorPalette = d->error->palette();
    errorPalette.setColor(QPalette::WindowText, QColor(200, 40, 30));
    d->error->setPalette(errorPalette);
    layout->addWidget(d->error);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
    d->exportButton = buttons->addButton(tr("&Export"), QDialogButtonBox::AcceptRole);
    d->exportButton->setDefault(true);
    layout->addWidget(buttons);
    connect(buttons, &QDialogButtonBox::accepted, this, &ExportDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &ExportDialog::reject);

    // Defaults: the last folder used, else the image's folder; k = 3 and 5 where they exist.
    QString folder = QSettings().value(QStringLiteral("export/lastFolder")).toString();
    if (folder.isEmpty() || !QDir(folder).exists())
        folder = d->result && !d->result->imagePath.isEmpty() ? QFileInfo(d->result->imagePath).absolutePath()
                                                              : QDir::homePath();
    if (d->result)
        d->path->setText(QDir(folder).filePath(defaultFileName(*d->result, ExportRequest::Kind::Figure)));
    QStringList defaultKs;
    for (int k : {3, 5})
        if (k <= d->maxK)
            defaultKs << QString::number(k);
    d->ks->setText(defaultKs.join(QLatin1Char(',')));
    d->figureButton->setChecked(true);

    const auto validate = [this] {
        QString problem;
        const bool figureKind = d->figureButton->isChecked();
        d->figureBox->setEnabled(figureKind);
        if (!d->result)
            problem = tr("There is no result to export yet.");
        else if (d->path->text().trimmed().isEmpty())
            problem = tr("Choose a file name.");
        else if (formatOf(d->path->text().trimmed()).isEmpty())
            problem = tr("The file name must end in .png, .svg or .pdf.");
        else if (!QFileInfo(d->path->text().trimmed()).absoluteDir().exists())
            problem = tr("The folder does not exist.");
        else if (figureKind || d->data->isChecked())
            parseKs(d->ks->text(), d->maxK, &problem);
        d->error->setText(problem);
        d->exportButton->setEnabled(problem.isEmpty());
    };
    connect(d->path, &QLineEdit::textChanged, this, validate);
    connect(d->ks, &QLineEdit::textChanged, this, validate);
    connect(d->data, &QCheckBox::toggled, this, validate);
    connect(d->figureButton, &QRadioButton::toggled, this, [this, validate](bool figure) {
        // Follow the kind with the default name unless the user typed their own.
        if (d->result) {
            const QFileInfo current(d->path->text());
            const auto oldKind = figure ? ExportRequest::Kind::CurrentView : ExportRequest::Kind::Figure;
            const QString oldDefault = QFileInfo(defaultFileName(*d->result, oldKind)).completeBaseName();
            if (current.completeBaseName() == oldDefault) {
                const QString next = QFileInfo(defaultFileName(*d->result, figure ? ExportRequest::Kind::Figure
                                                                                  : ExportRequest::Kind::CurrentView))
                                         .completeBaseName();
                d->path->setText(current.dir().filePath(
                    next + "." + (current.suffix().isEmpty() ? QStringLiteral("png") : current.suffix())));
            }
        }
        validate();
    });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString chosen =
            QFileDialog::getSaveFileName(this, tr("Export to"), d->path->text(),
                                         tr("PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf)"));
        if (!chosen.isEmpty()) {
            d->confirmedPath = chosen;
            d->path->setText(chosen);
        }
    });
    validate();
}

ExportDialog::~ExportDialog() = default;

ExportRequest ExportDialog::request() const
{
    ExportRequest r;
    r.kind = d->figureButton->isChecked() ? ExportRequest::Kind::Figure : ExportRequest::Kind::CurrentView;
    r.path = d->path->text().trimmed();
    r.dpi = d->dpi->value();
    for (size_t i = 0; i < d->levels.size(); ++i)
        if (d->levels[i]->isChecked())
            r.levels.push_back(static_cast<int>(i) + 1);
    r.ks = parseKs(d->ks->text(), d->maxK);
    r.writeData = d->data->isChecked();
    if (d->evidence->isEnabled() && d->evidence->isChecked() && d->evidenceOffer)
        r.evidence = d->evidenceOffer;
    if (d->concepts->isEnabled() && d->concepts->isChecked() && d->conceptsOffer)
        r.concepts = d->conceptsOffer;
    return r;
}

void ExportDialog::offerConceptPanel(const ConceptPanelRequest& panel, bool checked)
{
    d->conceptsOffer = panel;
    d->concepts->setText(tr("Concepts panel (level %1)").arg(panel.level));
    d->concepts->setToolTip(tr("One more panel: each level-%1 segment in its concept's colour, the concepts' names "
                               "in the legend")
                                .arg(panel.level));
    d->concepts->setEnabled(d->result != nullptr);
    d->concepts->setChecked(checked && d->concepts->isEnabled());
}

void ExportDialog::offerEvidenceRow(const EvidenceRowRequest& row, bool checked)
{
    d->evidenceOffer = row;
    d->evidence->setText(row.versusName.isEmpty()
                             ? tr("E&vidence row (class ‘%1’)").arg(row.className)
                             : tr("E&vidence row (class ‘%1’ versus ‘%2’)").arg(row.className, row.versusName));
    d->evidence->setToolTip(
        row.report ? tr("A second row as the Evidence view shows it: the last level's segments by their exact "
                        "contribution, the evidence density, and the ablation effects of the level below when the "
                        "view has computed them")
                   : tr("A second row: the last level's segments by their exact contribution and the evidence "
                        "density (choose a lower level in the Evidence view to add ablation effects)"));
    d->evidence->setEnabled(d->result && d->result->evidence.contributions.defined());
    d->evidence->setChecked(checked && d->evidence->isEnabled());
}

void ExportDialog::setRequest(const ExportRequest& request)
{
    (request.kind == ExportRequest::Kind::Figure ? d->figureButton : d->viewButton)->setChecked(true);
    d->path->setText(request.path);
    d->dpi->setValue(request.dpi);
    for (size_t i = 0; i < d->levels.size(); ++i)
        d->levels[i]->setChecked(std::find(request.levels.begin(), request.levels.end(), static_cast<int>(i) + 1) !=
                                 request.levels.end());
    QStringList ks;
    for (int k : request.ks)
        ks << QString::number(k);
    d->ks->setText(ks.join(QLatin1Char(',')));
    d->data->setChecked(request.writeData);
    if (request.evidence)
        offerEvidenceRow(*request.evidence, true);
    else
        d->evidence->setChecked(false);
    if (request.concepts)
        offerConceptPanel(*request.concepts, true);
    else
        d->concepts->setChecked(false);
}

void ExportDialog::accept()
{
    if (!d->result || !d->exportButton->isEnabled())
        return;
    const ExportRequest r = request();
    if (QFileInfo::exists(r.path) && r.path != d->confirmedPath &&
        QMessageBox::question(this, tr("Replace file?"),
                              tr("%1 already exists. Replace it?").arg(QDir::toNativeSeparators(r.path))) !=
            QMessageBox::Yes)
        return;

    QProgressDialog progress(tr("Exporting…"), tr("Cancel"), 0, 1, this);
    progress.setWindowModality(Qt::WindowModal);
    progress.setMinimumDuration(400);
    QStringList written;
    try {
        QApplication::setOverrideCursor(Qt::WaitCursor);
        written = exportTo(*d->result, d->view, r, [&progress](int done, int total, const QString& step) {
            progress.setMaximum(total);
            progress.setLabelText(step);
            progress.setValue(done);
            return !progress.wasCanceled();
        });
        QApplication::restoreOverrideCursor();
    } catch (const std::exception& e) {
        QApplication::restoreOverrideCursor();
        progress.close();
        QMessageBox::critical(this, tr("Export failed"), QString::fromStdString(e.what()));
        return;
    }
    progress.close();
    if (written.isEmpty())
        return;  // cancelled: keep the dialog open
    QSettings().setValue(QStringLiteral("export/lastFolder"), QFileInfo(r.path).absolutePath());
    QDialog::accept();
}

}  // namespace fec::ui
