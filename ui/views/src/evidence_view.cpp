#include "fec/ui/evidence_view.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <QCheckBox>
#include <QComboBox>
#include <QCursor>
#include <QDir>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QLinearGradient>
#include <QMetaObject>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QStandardItemModel>
#include <QToolTip>
#include <QVBoxLayout>

#include "fec/explain/concepts.h"
#include "fec/explain/evidence_stats.h"
#include "fec/explain/segment_evidence.h"
#include "fec/figure/figure.h"
#include "fec/imaging/render.h"
#include "fec/ui/charts.h"
#include "fec/ui/highlight.h"
#include "fec/ui/image_view.h"
#include "fec/ui/qcustomplot_wrapper.h"
#include "fec/ui/selection_model.h"
#include "panel_toolbar.h"
#include "view_style.h"

namespace fec::ui {

namespace {

QColor divergingQColor(double t)
{
    const cv::Vec3b c = imaging::divergingColour(t);
    return QColor(c[0], c[1], c[2]);
}

QString number(double v)
{
    return QString::number(v, 'f', std::abs(v) >= 100 ? 1 : 3);
}

QString signedNumber(double v)
{
    return (v >= 0 ? QStringLiteral("+") : QStringLiteral("−")) + number(std::abs(v));
}

QString segmentCount(int n)
{
    return n == 1 ? QObject::tr("1 segment") : QObject::tr("%1 segments").arg(n);
}

// " + label 1.234" or " − label 1.234": one term of the logit's sum.
QString term(const QString& label, double v)
{
    return (v >= 0 ? QStringLiteral(" + ") : QStringLiteral(" − ")) + label + QLatin1Char(' ') + number(std::abs(v));
}

// The diverging scale in `bar` with its values under it: -range (blue), -range/2, 0
// (transparent), +range/2, +range (red). Returns the bottom of the values' text.
int paintDivergingScale(QPainter& p, const QRect& bar, double range, const QColor& text)
{
    QLinearGradient g(bar.topLeft(), bar.topRight());
    for (int i = 0; i <= 20; ++i)
        g.setColorAt(i / 20.0, divergingQColor(-1.0 + i / 10.0));
    p.fillRect(bar, g);
    p.setPen(text);
    p.drawRect(bar.adjusted(0, 0, -1, -1));
    const QFontMetrics fm(p.font());
    const int y = bar.bottom() + 3 + fm.ascent();
    // Three significant digits for small ranges, where three decimals would round the ticks away.
    const auto value = [](double v) { return v >= 0.1 ? number(v) : QString::number(v, 'g', 3); };
    const QString values[] = {QStringLiteral("−") + value(range), QStringLiteral("−") + value(range / 2),
                              QStringLiteral("0"), QStringLiteral("+") + value(range / 2),
                              QStringLiteral("+") + value(range)};
    // The ends align with the bar's ends; the halves are centred on their ticks when there is room.
    const bool halves = fm.horizontalAdvance(values[0] + values[1] + values[2]) * 1.3 < bar.width() / 2.0;
    for (int i = 0; i < 5; ++i) {
        if (!halves && (i == 1 || i == 3))
            continue;
        const int tick = bar.left() + static_cast<int>(std::lround(bar.width() * i / 4.0));
        const int w = fm.horizontalAdvance(values[i]);
        const int x = i == 0 ? bar.left() : i == 4 ? bar.right() - w : tick - w / 2;
        p.drawLine(tick, bar.bottom(), tick, bar.bottom() + 2);
        p.drawText(x, y, values[i]);
    }
    return bar.bottom() + 3 + fm.height();
}

// The diverging scale with its values: -range (blue), 0 (transparent), +range (red).
class DivergingLegend : public QWidget {
public:
    explicit DivergingLegend(QWidget* parent) : QWidget(parent)
    {
        setMinimumHeight(34);
        setMinimumWidth(220);
        setToolTip(QObject::tr("Contribution to the logit of each final segment: blue lowers it, red raises it; "
                               "the scale is symmetric and zero is transparent"));
    }
    void setRange(double range)
    {
        m_range = range;
        update();
    }

protected:
    void paintEvent(QPaintEvent*) override
    {
        QPainter p(this);
        p.setRenderHint(QPainter::Antialiasing);
        paintDivergingScale(p, QRect(6, 4, width() - 12, 10), m_range, palette().color(QPalette::WindowText));
    }

private:
    double m_range = 1;
};

// Every class's probability in class order, as the prediction panel ranks them (fec::topClasses);
// empty when a logit is not finite.
std::vector<double> probabilitiesOf(const at::Tensor& logits)
{
    const auto ranked = topClasses(logits.flatten(), static_cast<int>(logits.numel()));
    std::vector<double> p(ranked.empty() ? 0 : static_cast<size_t>(logits.numel()), 0.0);
    for (const auto& c : ranked)
        p[static_cast<size_t>(c.index)] = c.probability;
    return p;
}

}  // namespace

// The dataset statistics of one checkpoint, read on the model's thread at the first ablation that
// needs them (reading hashes the checkpoint, too slow to repeat for every click), and again when
// the file changes (`fec evidence-stats` run again).
struct EvidenceView::DatasetStats {
    std::string checkpoint;
    std::mutex mutex;
    std::optional<explain::EvidenceStats> stats;
    std::filesystem::file_time_type written;

    AblationOptions options(AblationBaseline baseline, FecModelImpl& model, int level)
    {
        AblationOptions o;
        o.baseline = baseline;
        if (baseline != AblationBaseline::Dataset)
            return o;
        const std::lock_guard<std::mutex> lock(mutex);
        std::error_code ec;
        const auto time = std::filesystem::last_write_time(explain::evidenceStatsPathFor(checkpoint), ec);
        if (!stats || time != written) {
            written = time;
            stats.reset();  // never the old means after a failed read
            stats = explain::loadEvidenceStatsFor(checkpoint, model);
            if (!stats)
                throw std::runtime_error(explain::evidenceStatsPathFor(checkpoint) +
                                         " does not exist: run `fec evidence-stats` for this checkpoint");
        }
        o.datasetMean = explain::datasetMeanFor(*stats, level);
        return o;
    }
};

EvidenceView::EvidenceView(SelectionModel* selection, QWidget* parent) : QWidget(parent), m_selection(selection)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);

    auto* bar = new PanelToolbar(this);
    auto [classGroup, classRow] = bar->addGroup();
    classRow->addWidget(new QLabel(tr("Class"), classGroup));
    m_classCombo = new QComboBox(classGroup);
    m_classCombo->setToolTip(tr("The class whose logit is split over the segments (the top-1 class by default)"));
    m_classCombo->setMinimumContentsLength(14);
    m_classCombo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    classRow->addWidget(m_classCombo);
    classRow->addWidget(new QLabel(tr("versus"), classGroup));
    m_versusCombo = new QComboBox(classGroup);
    m_versusCombo->setToolTip(tr("Explain the difference of the two logits: why this class rather than that one"));
    m_versusCombo->setMinimumContentsLength(12);
    m_versusCombo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    classRow->addWidget(m_versusCombo);
    connect(m_classCombo, &QComboBox::activated, this, [this](int i) {
        m_userChoseClass = true;
        m_requestedClass.clear();
        setTargetClass(i);
    });
    connect(m_versusCombo, &QComboBox::activated, this, [this](int i) { setVersusClass(i - 1); });

    auto [levelGroup, levelRow] = bar->addGroup();
    levelRow->addWidget(new QLabel(tr("Level"), levelGroup));
    m_levelCombo = new QComboBox(levelGroup);
    m_levelCombo->setToolTip(tr("The last level splits the logit exactly; lower levels show the effect of removing "
                                "each segment (computed in the background, once per image and level)"));
    m_levelCombo->setSizeAdjustPolicy(QComboBox::AdjustToContents);  // filled when a result arrives
    connect(m_levelCombo, &QComboBox::activated, this, [this](int i) { setLevel(i + 1); });
    levelRow->addWidget(m_levelCombo);
    levelRow->addWidget(new QLabel(tr("Baseline"), levelGroup));
    m_baselineCombo = new QComboBox(levelGroup);
    m_baselineCombo->setToolTip(tr("What replaces a removed segment, for the effects of lower levels and for "
                                   "interventions"));
    m_baselineCombo->addItem(tr("image mean"), static_cast<int>(AblationBaseline::Mean));
    m_baselineCombo->setItemData(0, tr("The mean feature of the image's segments at that level"), Qt::ToolTipRole);
    m_baselineCombo->addItem(tr("zero"), static_cast<int>(AblationBaseline::Zero));
    m_baselineCombo->setItemData(1, tr("A zero feature vector"), Qt::ToolTipRole);
    m_baselineCombo->addItem(tr("dataset"), static_cast<int>(AblationBaseline::Dataset));
    connect(m_baselineCombo, &QComboBox::activated, this, [this](int i) {
        if (!setBaseline(static_cast<AblationBaseline>(m_baselineCombo->itemData(i).toInt())))
            updateBaselineChoices();
    });
    levelRow->addWidget(m_baselineCombo);
    m_progress = new QProgressBar(levelGroup);
    m_progress->setFixedWidth(110);
    m_progress->setFormat(tr("ablating %p%"));
    m_progress->hide();
    levelRow->addWidget(m_progress);
    m_cancelButton = new QPushButton(tr("Cancel"), levelGroup);
    m_cancelButton->setToolTip(tr("Stop computing the ablation effects"));
    m_cancelButton->hide();
    connect(m_cancelButton, &QPushButton::clicked, this, &EvidenceView::cancelEffects);
    levelRow->addWidget(m_cancelButton);

    auto [interveneGroup, interveneRow] = bar->addGroup();
    m_interveneCheck = new QCheckBox(tr("Intervene"), interveneGroup);
    m_interveneCheck->setToolTip(tr("Click segments (image or bars) to remove them, or to keep only them, and see "
                                    "the new prediction (the network reruns after the last pool)"));
    interveneRow->addWidget(m_interveneCheck);
    m_interveneMode = new QComboBox(interveneGroup);
    m_interveneMode->addItems({tr("remove clicked"), tr("keep only clicked")});
    connect(m_interveneMode, &QComboBox::currentIndexChanged, this, [this](int i) { setKeepOnly(i == 1); });
    interveneRow->addWidget(m_interveneMode);
    m_resetButton = new QPushButton(tr("Reset"), interveneGroup);
    m_resetButton->setToolTip(tr("Restore every segment"));
    connect(m_resetButton, &QPushButton::clicked, this, &EvidenceView::resetIntervention);
    interveneRow->addWidget(m_resetButton);

    auto [conceptGroup, conceptRow] = bar->addGroup();
    m_conceptsCheck = new QCheckBox(tr("Concepts"), conceptGroup);
    m_conceptsCheck->setToolTip(tr("Name the bars by each segment's concept (nearest centre of the concept atlas) "
                                   "and show the concept on hover, at the atlas's level. Open an atlas in the "
                                   "Concepts view first"));
    m_conceptsCheck->setEnabled(false);
    connect(m_conceptsCheck, &QCheckBox::toggled, this, &EvidenceView::setShowConcepts);
    conceptRow->addWidget(m_conceptsCheck);

    auto [legendGroup, legendRow] = bar->addGroup();
    auto* legend = new DivergingLegend(legendGroup);
    m_legend = legend;
    legendRow->addWidget(m_legend);
    layout->addWidget(bar);

    m_summary = new QLabel(this);
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_summary->setContentsMargins(8, 4, 8, 2);
    layout->addWidget(m_summary);
    m_interventionLabel = new QLabel(this);
    m_interventionLabel->setWordWrap(true);
    m_interventionLabel->setContentsMargins(8, 0, 8, 4);
    layout->addWidget(m_interventionLabel);

    auto* split = new QSplitter(Qt::Horizontal, this);
    m_view = new ImageView(split);
    m_view->setSelectionModel(selection);
    m_view->setNodeLookup([this](QPoint p) { return m_result ? nodeAt(m_result->pyramid, m_level, p) : -1; });
    m_view->setPlaceholderText(tr("Open an image (Ctrl+O) to see the evidence for its prediction."));
    connect(m_view, &ImageView::inputPixelClicked, this, [this](QPoint p) {
        if (!m_result || !m_interveneCheck->isChecked() || p.x() < 0)
            return;
        // Interventions act on the level shown.
        const int32_t raw = m_result->pyramid.clusterAt(m_level, p.x(), p.y());
        if (nodeOfSegment(raw) >= 0)
            toggleSegment(raw);
    });
    split->addWidget(m_view);

    const auto chart = createTitledPlot(split, tr("Segments by contribution"), tr("segments, ranked"),
                                        tr("contribution to the logit"), QSize(260, 200),
                                        tr("Hover a bar to find its segment; click to select it (or, with "
                                           "Intervene, to remove it)"));
    m_plot = chart.plot;
    applyChartPalette(chart, palette());
    m_plot->setInteractions(QCP::Interactions());
    m_plot->xAxis->grid()->setVisible(false);
    QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
    ticker->setTickStep(1);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    m_plot->xAxis->setTicker(ticker);
    m_plot->xAxis->setSubTicks(false);
    m_positiveBars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    m_negativeBars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    m_markBars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    m_hoverBars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    m_positiveBars->setPen(Qt::NoPen);
    m_positiveBars->setBrush(divergingQColor(0.8));
    m_negativeBars->setPen(Qt::NoPen);
    m_negativeBars->setBrush(divergingQColor(-0.8));
    m_markBars->setPen(QPen(palette().color(QPalette::WindowText), 1));
    m_markBars->setBrush(QBrush(palette().color(QPalette::WindowText), Qt::BDiagPattern));
    m_hoverBars->setPen(QPen(QColor(255, 200, 0), 2.5));
    m_hoverBars->setBrush(Qt::NoBrush);
    for (auto* b : {m_positiveBars, m_negativeBars, m_markBars, m_hoverBars})
        b->setWidth(0.8);
    connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
        const int rank = segmentAtRank(m_plot->xAxis->pixelToCoord(e->position().x()));
        const int node = rank >= 0 ? nodeOfSegment(m_order[rank]) : -1;
        if (m_selection)
            m_selection->setHoveredNode(node);
        if (rank >= 0) {
            const int32_t s = m_order[rank];
            QToolTip::showText(e->globalPosition().toPoint(),
                               tr("Segment %1 (rank %2): %3, %4 pixels")
                                   .arg(s)
                                   .arg(rank + 1)
                                   .arg(signedNumber(m_values[s]))
                                   .arg(m_result->pyramid.nodes[nodeOfSegment(s)].pixels),
                               m_plot);
        }
    });
    connect(m_plot, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        const int rank = segmentAtRank(m_plot->xAxis->pixelToCoord(e->position().x()));
        if (rank < 0) {
            if (m_selection)
                m_selection->setSelectedNode(-1);
            return;
        }
        if (m_interveneCheck->isChecked() && m_result)
            toggleSegment(m_order[rank]);
        if (m_selection)
            m_selection->setSelectedNode(nodeOfSegment(m_order[rank]));
    });
    split->addWidget(m_plot);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    layout->addWidget(split, 1);

    if (selection) {
        connect(selection, &SelectionModel::selectedNodeChanged, this, &EvidenceView::updateHighlight);
        connect(selection, &SelectionModel::hoveredNodeChanged, this, &EvidenceView::updateHighlight);
        connect(selection, &SelectionModel::hoveredNodeChanged, this, &EvidenceView::showConceptTip);
    }
    m_datasetStats = std::make_shared<DatasetStats>();
    setModelRunner({});
    updateBaselineChoices();
    recompute();
}

EvidenceView::~EvidenceView() = default;

void EvidenceView::setResult(ExplainResultPtr result)
{
    m_result = std::move(result);
    dropEffects();
    if (m_result) {
        const int levels = m_result->pyramid.levelCount();
        m_level = m_level < 1 || m_level > levels ? levels : m_level;
    }
    m_intervened.clear();
    ++m_generation;
    m_newProbabilities.clear();
    m_interventionError.clear();
    m_interventionPending = false;
    if (m_result)
        m_view->setPixelMapping(pixelMappingOf(m_result->prepared.mapping));
    else
        m_view->setPixelMapping({});
    updateBaselineChoices();  // the statistics may have been written since
    rebuildClassCombos();
    recompute();
}

void EvidenceView::dropEffects()
{
    ++m_resultSerial;  // answers still on their way are ignored
    if (m_effectsCancel)
        *m_effectsCancel = true;
    m_effects.clear();
    m_effectsPending = false;
    m_effectsError.clear();
    m_progress->hide();
    m_cancelButton->hide();
}

void EvidenceView::setClassNames(const QStringList& names)
{
    m_classNames = names;
    rebuildClassCombos();
    if (!m_requestedClass.isEmpty())
        recompute();
}

void EvidenceView::setModelRunner(ModelRunner runner)
{
    m_runner = std::move(runner);
    const bool on = bool(m_runner);
    m_interveneCheck->setEnabled(on);
    m_interveneMode->setEnabled(on);
    m_resetButton->setEnabled(on);
    if (!on)
        m_interveneCheck->setToolTip(tr("Interventions need the model that explained the image"));
}

void EvidenceView::setModelPath(const QString& checkpointPath)
{
    if (checkpointPath != m_modelPath) {
        m_modelPath = checkpointPath;
        m_datasetStats = std::make_shared<DatasetStats>();
        m_datasetStats->checkpoint = checkpointPath.toStdString();
    }
    updateBaselineChoices();
}

namespace {

QString statsFileFor(const QString& checkpoint)
{
    return checkpoint.isEmpty() ? QString()
                                : QString::fromStdString(explain::evidenceStatsPathFor(checkpoint.toStdString()));
}

}  // namespace

void EvidenceView::updateBaselineChoices()
{
    const QString file = statsFileFor(m_modelPath);
    const bool available = !file.isEmpty() && QFileInfo::exists(file);
    if (auto* model = qobject_cast<QStandardItemModel*>(m_baselineCombo->model()))
        if (auto* item = model->item(m_baselineCombo->findData(static_cast<int>(AblationBaseline::Dataset)))) {
            item->setEnabled(available);
            item->setToolTip(
                available
                    ? tr("The mean feature of each level over a dataset, from %1").arg(QDir::toNativeSeparators(file))
                : file.isEmpty()
                    ? tr("Needs the statistics beside the model: run `fec evidence-stats` for its checkpoint")
                    : tr("Needs %1 beside the model: run `fec evidence-stats --checkpoint %2 --data …`")
                          .arg(QFileInfo(file).fileName(), QFileInfo(m_modelPath).fileName()));
        }
    if (!available && m_baseline == AblationBaseline::Dataset)
        setBaseline(AblationBaseline::Mean);  // the statistics went away (or another model came)
    const QSignalBlocker block(m_baselineCombo);
    m_baselineCombo->setCurrentIndex(m_baselineCombo->findData(static_cast<int>(m_baseline)));
}

QString EvidenceView::baselineDescription() const
{
    switch (m_baseline) {
    case AblationBaseline::Zero:
        return tr("zero");
    case AblationBaseline::Dataset:
        return tr("the dataset mean of its level");
    case AblationBaseline::Mean:
        break;
    }
    return tr("the mean of the image's segments at its level");
}

bool EvidenceView::setBaseline(AblationBaseline baseline)
{
    if (baseline == AblationBaseline::Dataset && !QFileInfo::exists(statsFileFor(m_modelPath)))
        return false;
    if (baseline == m_baseline)
        return true;
    m_baseline = baseline;
    dropEffects();  // computed (or being computed) with the old baseline
    {
        const QSignalBlocker block(m_baselineCombo);
        m_baselineCombo->setCurrentIndex(m_baselineCombo->findData(static_cast<int>(m_baseline)));
    }
    recompute();  // asks for the shown level's effects again, and for the intervention's prediction
    return true;
}

QString EvidenceView::className(int64_t index) const
{
    if (index >= 0 && index < m_classCombo->count())
        return m_classCombo->itemText(static_cast<int>(index));
    return index >= 0 && index < m_classNames.size() ? m_classNames[static_cast<int>(index)]
                                                     : tr("class %1").arg(index);
}

std::shared_ptr<const explain::EvidenceReport> EvidenceView::report() const
{
    if (!m_result || !m_result->evidence.contributions.defined() || m_result->pyramid.levelCount() == 0)
        return nullptr;
    auto report =
        std::make_shared<explain::EvidenceReport>(explain::exactSegmentEvidence(*m_result, m_target, m_versus));
    for (auto& s : report->segments) {
        const auto it = m_effects.constFind(s.level);
        if (it == m_effects.constEnd())
            continue;
        const auto effects = it->accessor<float, 2>();  // [segments, classes]
        const int32_t i =
            m_result->pyramid.levels[static_cast<size_t>(s.level - 1)].compact[static_cast<size_t>(s.segment)];
        s.effect = effects[i][m_target] - (m_versus >= 0 ? effects[i][m_versus] : 0.f);
    }
    return report;
}

QImage EvidenceView::exportImage() const
{
    if (m_rendered.isNull())
        return {};
    // Small images (Fashion-MNIST's are 28 pixels) are enlarged by whole factors, without smoothing,
    // so that the legend under them stays readable and every segment keeps sharp edges.
    constexpr int kMinWidth = 480;
    QImage picture = m_rendered.convertToFormat(QImage::Format_RGB32);
    if (picture.width() < kMinWidth) {
        const int f = (kMinWidth + picture.width() - 1) / picture.width();
        picture =
            picture.scaled(picture.width() * f, picture.height() * f, Qt::IgnoreAspectRatio, Qt::FastTransformation);
    }
    const int width = picture.width();
    QFont font = this->font();
    font.setPixelSize(std::clamp(width / 36, 13, 28));
    const QFontMetrics fm(font);
    const int pad = fm.height() / 2;
    const bool exact = m_result && m_level == m_result->pyramid.levelCount();
    const QString what =
        (m_view->caption().isEmpty() ? QString() : m_view->caption() + QLatin1Char('\n')) +
        (exact
             ? tr("Colour: contribution of each segment to the logit (blue lowers it, red raises it)")
             : tr("Colour: effect on the logit of removing each segment (replaced by %1)").arg(baselineDescription()));
    const QRect textBox(pad, 0, width - 2 * pad, 100000);
    const int textHeight = fm.boundingRect(textBox, Qt::TextWordWrap, what).height();
    const int barHeight = std::max(10, fm.height() * 2 / 3);
    const int legendHeight = pad + textHeight + pad + barHeight + 3 + fm.height() + pad;

    QImage out(width, picture.height() + legendHeight, QImage::Format_RGB32);
    out.setDevicePixelRatio(1);
    out.fill(Qt::white);
    QPainter p(&out);
    p.setRenderHint(QPainter::Antialiasing);
    p.setRenderHint(QPainter::TextAntialiasing);
    p.drawImage(0, 0, picture);
    p.setFont(font);
    p.setPen(Qt::black);
    int y = picture.height() + pad;
    p.drawText(QRect(pad, y, width - 2 * pad, textHeight), Qt::TextWordWrap | Qt::AlignLeft | Qt::AlignTop, what);
    y += textHeight + pad;
    const int margin = std::max(pad, fm.horizontalAdvance(QStringLiteral("−0.0000")) / 2 + pad);
    paintDivergingScale(p, QRect(margin, y, width - 2 * margin, barHeight), m_range, Qt::black);
    return out;
}

bool EvidenceView::setTargetClassName(const QString& name)
{
    m_requestedClass = name;
    m_userChoseClass = !name.isEmpty();
    recompute();
    return m_classError.isEmpty();
}

void EvidenceView::setTargetClass(qint64 index)
{
    if (m_result && m_result->evidence.contributions.defined()) {
        const int64_t classes = m_result->evidence.contributions.size(1);
        index = std::clamp<qint64>(index, 0, classes - 1);
    }
    m_userChoseClass = true;
    if (index == m_target && m_requestedClass.isEmpty())
        return;
    m_requestedClass.clear();
    m_target = index;
    recompute();
}

void EvidenceView::setVersusClass(qint64 index)
{
    if (index == m_versus)
        return;
    m_versus = index;
    recompute();
}

void EvidenceView::rebuildClassCombos()
{
    const QSignalBlocker b1(m_classCombo), b2(m_versusCombo);
    m_classCombo->clear();
    m_versusCombo->clear();
    m_versusCombo->addItem(tr("(none)"));
    const bool hasEvidence = m_result && m_result->evidence.contributions.defined();
    const int64_t classes = hasEvidence ? m_result->evidence.contributions.size(1) : 0;
    for (int64_t c = 0; c < classes; ++c) {
        const QString name = c < m_classNames.size() ? m_classNames[static_cast<int>(c)] : tr("class %1").arg(c);
        m_classCombo->addItem(name);
        m_versusCombo->addItem(name);
    }
    m_classCombo->setEnabled(classes > 0);
    m_versusCombo->setEnabled(classes > 1);
    const QSignalBlocker b3(m_levelCombo);
    m_levelCombo->clear();
    const int levels = m_result ? m_result->pyramid.levelCount() : 0;
    for (int l = 1; l <= levels; ++l)
        m_levelCombo->addItem(l == levels ? tr("%1 · exact split").arg(l) : tr("%1 · ablation").arg(l));
    m_levelCombo->setEnabled(hasEvidence && levels > 1);
    if (m_level >= 1)
        m_levelCombo->setCurrentIndex(m_level - 1);
}

int EvidenceView::nodeOfSegment(int32_t segment) const
{
    if (!m_result)
        return -1;
    return m_result->pyramid.nodeOf(m_level, segment);
}

int EvidenceView::segmentAtRank(double key) const
{
    const int rank = static_cast<int>(std::lround(key)) - 1;
    if (rank < 0 || rank >= static_cast<int>(m_order.size()) || std::abs(key - (rank + 1)) > 0.45)
        return -1;
    return rank;
}

void EvidenceView::recompute()
{
    m_maps = EvidenceMaps();
    m_order.clear();
    m_values.clear();
    m_shownMap = at::Tensor();
    m_classError.clear();
    m_baseProbabilities.clear();
    const bool hasEvidence =
        m_result && m_result->evidence.contributions.defined() && m_result->pyramid.levelCount() > 0;
    if (hasEvidence) {
        const auto& r = *m_result;
        const int64_t classes = r.evidence.contributions.size(1);
        if (!m_requestedClass.isEmpty()) {
            std::vector<std::string> names;
            for (int64_t c = 0; c < classes; ++c)
                names.push_back(c < m_classNames.size() ? m_classNames[static_cast<int>(c)].toStdString()
                                                        : std::to_string(c));
            try {
                m_target = explain::parseClass(m_requestedClass.toStdString(), names);
            } catch (const std::exception& e) {
                m_classError = QString::fromStdString(e.what());
                m_target = r.top.empty() ? 0 : r.top.front().index;
            }
        } else if (!m_userChoseClass) {
            m_target = r.top.empty() ? 0 : r.top.front().index;
        }
        m_target = std::clamp<int64_t>(m_target, 0, classes - 1);
        if (m_versus >= classes || m_versus == m_target)
            m_versus = -1;
        m_maps = evidenceMaps(r.evidence, r.pyramid, m_target, m_versus);
        const int levels = r.pyramid.levelCount();
        m_level = std::clamp(m_level, 1, levels);
        const auto& lv = r.pyramid.levels[m_level - 1];
        if (m_level == levels) {
            m_values = m_maps.segment;
            m_shownMap = m_maps.total;
        } else if (m_effects.contains(m_level)) {
            // Effect on the logit (difference): a column of the effects, minus the contrast's.
            at::Tensor col = m_effects.value(m_level).select(1, m_target);
            if (m_versus >= 0)
                col = col - m_effects.value(m_level).select(1, m_versus);
            col = col.to(at::kDouble).contiguous();
            m_values.assign(static_cast<size_t>(lv.gridH * lv.gridW), 0.0);
            for (size_t i = 0; i < lv.nonEmpty.size(); ++i)
                m_values[static_cast<size_t>(lv.nonEmpty[i])] = col.data_ptr<double>()[i];
            const at::Tensor labels = r.pyramid.pixelLabels(m_level).to(at::kLong);
            const at::Tensor byCompact = col.to(at::kFloat);
            m_shownMap =
                at::where(labels >= 0, byCompact.index_select(0, labels.clamp_min(0).flatten()).view_as(labels),
                          at::zeros({}, at::kFloat));
        } else if (!m_effectsPending) {
            requestEffects();
        }
        if (!m_values.empty()) {
            m_order.assign(lv.nonEmpty.begin(), lv.nonEmpty.end());
            std::stable_sort(m_order.begin(), m_order.end(),
                             [this](int32_t a, int32_t b) { return m_values[a] > m_values[b]; });
        }
        m_range = 0;
        for (int32_t s : m_order)
            m_range = std::max(m_range, std::abs(m_values[s]));
        if (!(m_range > 0))
            m_range = 1e-6;
        const at::Tensor logits = r.trace.logits.defined() ? r.trace.logits[0] : r.evidence.logits()[0];
        m_baseProbabilities = probabilitiesOf(logits);
    }
    {
        const QSignalBlocker b1(m_classCombo), b2(m_versusCombo);
        if (hasEvidence) {
            const QSignalBlocker b3(m_levelCombo);
            m_levelCombo->setCurrentIndex(m_level - 1);
            m_classCombo->setCurrentIndex(static_cast<int>(m_target));
            m_versusCombo->setCurrentIndex(static_cast<int>(m_versus + 1));
        }
    }
    static_cast<DivergingLegend*>(m_legend)->setRange(m_range);
    updateConcepts();
    rebuildChart();
    updateSummary();
    render();
    updateHighlight();
    if (!m_intervened.empty() || m_keepOnly)
        requestIntervention();
}

QString EvidenceView::summaryText() const
{
    return m_summary->text();
}

QString EvidenceView::interventionText() const
{
    return m_interventionLabel->text();
}

void EvidenceView::updateSummary()
{
    if (!m_result) {
        m_summary->setText(tr("No image explained yet."));
        m_interventionLabel->clear();
        return;
    }
    if (!m_result->evidence.contributions.defined()) {
        m_summary->setText(tr("This model has no classifier head (a backbone): there is no logit to split."));
        m_interventionLabel->clear();
        return;
    }
    const QString target = m_classCombo->itemText(static_cast<int>(m_target));
    const QString what =
        m_versus >= 0
            ? tr("Logit difference ‘%1’ − ‘%2’").arg(target, m_versusCombo->itemText(static_cast<int>(m_versus + 1)))
            : tr("Logit of ‘%1’").arg(target);
    const double located = m_maps.logit - m_maps.bias - m_maps.unlocated;
    QString text = tr("%1: %2 = bias %3").arg(what, number(m_maps.logit), number(m_maps.bias)) +
                   term(segmentCount(static_cast<int>(m_order.size())), located) +
                   term(tr("not located in any pixel"), m_maps.unlocated) + tr(" (empty final clusters)");
    if (!m_classError.isEmpty())
        text = m_classError + QStringLiteral("\n") + text;
    const int levels = m_result->pyramid.levelCount();
    if (m_level < levels) {
        const int n = static_cast<int>(m_result->pyramid.levels[m_level - 1].nonEmpty.size());
        if (!m_effectsError.isEmpty())
            text += tr("\nLevel %1: the ablation effects could not be computed: %2").arg(m_level).arg(m_effectsError);
        else if (m_values.empty())
            text +=
                tr("\nLevel %1: computing the effect of removing each of its %2…").arg(m_level).arg(segmentCount(n));
        else
            text += tr("\nLevel %1: each bar is the effect of removing one of its %2 (logit before minus after; the "
                       "segment is replaced by %3)")
                        .arg(m_level)
                        .arg(segmentCount(n))
                        .arg(baselineDescription());
    }
    m_summary->setText(text);

    if (!m_runner) {
        m_interventionLabel->setText(tr("Interventions: no model available."));
        return;
    }
    if (!m_interventionError.isEmpty()) {
        m_interventionLabel->setText(tr("Intervention failed: %1").arg(m_interventionError));
        return;
    }
    if (m_intervened.empty() && !m_keepOnly) {
        m_interventionLabel->setText(
            m_interveneCheck->isChecked()
                ? tr("Click segments to remove them (replaced by %1).").arg(baselineDescription())
                : QString());
        return;
    }
    const QString count = tr("%1 of level %2").arg(segmentCount(static_cast<int>(m_intervened.size()))).arg(m_level);
    const QString action = m_keepOnly ? tr("Keeping only %1").arg(count) : tr("Removing %1").arg(count);
    if (m_interventionPending && m_newProbabilities.empty()) {
        m_interventionLabel->setText(action + tr(": computing…"));
        return;
    }
    if (m_newProbabilities.size() != m_baseProbabilities.size()) {
        m_interventionLabel->setText(action + QStringLiteral("."));
        return;
    }
    std::vector<int> order(m_newProbabilities.size());
    std::iota(order.begin(), order.end(), 0);
    const int shown = std::min<int>(3, static_cast<int>(order.size()));
    std::partial_sort(order.begin(), order.begin() + shown, order.end(),
                      [this](int a, int b) { return m_newProbabilities[a] > m_newProbabilities[b]; });
    QStringList parts;
    auto describe = [this](int c) {
        const double p = m_newProbabilities[c] * 100, d = p - m_baseProbabilities[c] * 100;
        return tr("%1 %2% (%3%4 pts)")
            .arg(m_classCombo->itemText(c))
            .arg(p, 0, 'f', 1)
            .arg(d >= 0 ? QStringLiteral("+") : QStringLiteral("−"))
            .arg(std::abs(d), 0, 'f', 1);
    };
    for (int i = 0; i < shown; ++i)
        parts << describe(order[i]);
    if (std::find(order.begin(), order.begin() + shown, static_cast<int>(m_target)) == order.begin() + shown)
        parts << describe(static_cast<int>(m_target));
    m_interventionLabel->setText(action + tr(" → ") + parts.join(QStringLiteral(", ")) +
                                 (m_interventionPending ? tr(" (updating…)") : QString()));
}

void EvidenceView::rebuildChart()
{
    QVector<double> pk, pv, nk, nv, mk, mv;
    for (int i = 0; i < static_cast<int>(m_order.size()); ++i) {
        const double v = m_values[m_order[i]];
        (v >= 0 ? pk : nk).push_back(i + 1);
        (v >= 0 ? pv : nv).push_back(v);
        if (std::find(m_intervened.begin(), m_intervened.end(), m_order[i]) != m_intervened.end()) {
            mk.push_back(i + 1);
            mv.push_back(v);
        }
    }
    const bool exact = !m_result || m_level == m_result->pyramid.levelCount();
    m_plot->yAxis->setLabel(exact ? tr("contribution to the logit") : tr("ablation effect on the logit"));
    m_positiveBars->setData(pk, pv, true);
    m_negativeBars->setData(nk, nv, true);
    m_markBars->setData(mk, mv, true);
    const int n = static_cast<int>(m_order.size());
    if (showsConcepts()) {
        // One tick per bar, named by the segment's concept.
        QSharedPointer<QCPAxisTickerText> names(new QCPAxisTickerText);
        for (int i = 0; i < n; ++i)
            names->addTick(i + 1, conceptOfSegment(m_order[static_cast<size_t>(i)]));
        m_plot->xAxis->setTicker(names);
        m_plot->xAxis->setTickLabelRotation(60);
        m_plot->xAxis->setLabel(tr("segments, ranked, by concept"));
    } else if (!m_plot->xAxis->ticker().dynamicCast<QCPAxisTickerFixed>()) {
        QSharedPointer<QCPAxisTickerFixed> ranks(new QCPAxisTickerFixed);
        ranks->setTickStep(1);
        ranks->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        m_plot->xAxis->setTicker(ranks);
        m_plot->xAxis->setTickLabelRotation(0);
        m_plot->xAxis->setLabel(tr("segments, ranked"));
    }
    m_plot->xAxis->setRange(0.3, std::max(1, n) + 0.7);
    double lo = 0, hi = 0;
    for (double v : pv)
        hi = std::max(hi, v);
    for (double v : nv)
        lo = std::min(lo, v);
    const double pad = std::max(1e-6, (hi - lo) * 0.06);
    m_plot->yAxis->setRange(lo - pad, hi + pad);
    m_plot->replot();
}

void EvidenceView::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    updateBaselineChoices();
    if (m_dirty)
        render();
}

void EvidenceView::render()
{
    if (!readyToRender(*this, *m_view, m_result != nullptr, m_rendered, m_dirty))
        return;
    const auto& r = *m_result;
    if (!m_shownMap.defined()) {
        m_rendered = figure::toQImage(r.image);
        m_view->setImage(m_rendered);
        m_view->setCaption(m_maps.total.defined() ? tr("Level %1 · computing ablation effects…").arg(m_level)
                                                  : tr("No classifier head: no evidence"));
    } else {
        try {
            m_rendered = figure::toQImage(imaging::divergingOverlay(r.image, m_shownMap, r.prepared.mapping, m_range));
        } catch (const std::exception& e) {
            m_rendered = figure::toQImage(r.image);
            m_summary->setText(m_summary->text() + QStringLiteral("\n") + QString::fromStdString(e.what()));
        }
        m_view->setImage(m_rendered);
        const auto& lv = r.pyramid.levels[m_level - 1];
        m_view->setCaption(tr("Level %1 · %2 segments · %3 ‘%4’%5")
                               .arg(m_level)
                               .arg(lv.nonEmpty.size())
                               .arg(m_level == r.pyramid.levelCount() ? tr("evidence for") : tr("ablation effects on"))
                               .arg(m_classCombo->itemText(static_cast<int>(m_target)))
                               .arg(m_versus >= 0
                                        ? tr(" vs ‘%1’").arg(m_versusCombo->itemText(static_cast<int>(m_versus + 1)))
                                        : QString()));
    }
    m_renderedId = r.requestId;
    Q_EMIT rendered();
}

void EvidenceView::setConceptAtlas(std::shared_ptr<const explain::Atlas> atlas)
{
    m_atlas = std::move(atlas);
    m_segmentConcepts.clear();
    m_conceptsFor = nullptr;
    m_conceptsError.clear();
    if (!m_atlas)
        m_concepts = false;
    {
        const QSignalBlocker block(m_conceptsCheck);
        m_conceptsCheck->setEnabled(m_atlas != nullptr);
        m_conceptsCheck->setChecked(m_concepts);
    }
    updateConcepts();
    rebuildChart();
}

void EvidenceView::setShowConcepts(bool on)
{
    m_concepts = on && m_atlas;
    {
        const QSignalBlocker block(m_conceptsCheck);
        m_conceptsCheck->setChecked(m_concepts);
    }
    if (m_concepts && m_result && m_atlas->level != m_level)
        setLevel(m_atlas->level);  // concepts exist for the atlas's level
    updateConcepts();
    rebuildChart();
}

bool EvidenceView::showsConcepts() const
{
    return m_concepts && m_atlas && m_level == m_atlas->level && !m_segmentConcepts.empty() &&
           m_conceptsFor == m_result.get();
}

void EvidenceView::updateConcepts()
{
    if (!m_concepts || !m_atlas || !m_result) {
        m_segmentConcepts.clear();
        m_conceptsFor = nullptr;
        return;
    }
    if (m_conceptsFor == m_result.get())
        return;
    m_conceptsFor = m_result.get();
    m_segmentConcepts = conceptsOrError(*m_atlas, m_result->pyramid, m_conceptsError);
    if (!m_conceptsError.isEmpty())
        m_conceptsCheck->setToolTip(tr("No concepts for this image: %1").arg(m_conceptsError));
}

QString EvidenceView::conceptOfSegment(int32_t segment) const
{
    if (!showsConcepts())
        return {};
    const auto& lv = m_result->pyramid.levels[static_cast<size_t>(m_level - 1)];
    const int32_t compact =
        segment >= 0 && segment < static_cast<int32_t>(lv.compact.size()) ? lv.compact[segment] : -1;
    if (compact < 0 || compact >= static_cast<int32_t>(m_segmentConcepts.size()))
        return {};
    return QString::fromStdString(m_atlas->conceptLabel(m_segmentConcepts[static_cast<size_t>(compact)]));
}

void EvidenceView::showConceptTip(int node)
{
    if (!showsConcepts() || node < 0 || node >= static_cast<int>(m_result->pyramid.nodes.size()) ||
        !m_view->underMouse())
        return;
    const auto& n = m_result->pyramid.nodes[static_cast<size_t>(node)];
    const QString name = n.level == m_level ? conceptOfSegment(n.cluster) : QString();
    if (!name.isEmpty())
        QToolTip::showText(QCursor::pos(), tr("Concept: %1").arg(name), m_view);
}

void EvidenceView::updateHighlight()
{
    if (!showSelection(*m_view, m_result ? &m_result->pyramid : nullptr, m_selection)) {
        m_hoverBars->data()->clear();
        m_plot->replot();
        return;
    }
    // The bar of the hovered (else the selected) node's final segment.
    int node = m_selection->hoveredNode() >= 0 ? m_selection->hoveredNode() : m_selection->selectedNode();
    const auto& pyramid = m_result->pyramid;
    while (node >= 0 && node < static_cast<int>(pyramid.nodes.size()) && pyramid.nodes[node].level < m_level)
        node = pyramid.nodes[node].parent;
    if (node >= 0 && node < static_cast<int>(pyramid.nodes.size()) && pyramid.nodes[node].level != m_level)
        node = -1;
    QVector<double> k, v;
    if (node >= 0 && node < static_cast<int>(pyramid.nodes.size())) {
        const int32_t s = pyramid.nodes[node].cluster;
        const auto it = std::find(m_order.begin(), m_order.end(), s);
        if (it != m_order.end()) {
            k.push_back(static_cast<double>(it - m_order.begin()) + 1);
            v.push_back(m_values[s]);
        }
    }
    m_hoverBars->setData(k, v, true);
    m_plot->replot();
}

void EvidenceView::toggleSegment(qint32 segment)
{
    if (!m_result || m_result->pyramid.nodeOf(m_level, segment) < 0)
        return;
    const auto it = std::find(m_intervened.begin(), m_intervened.end(), segment);
    if (it != m_intervened.end())
        m_intervened.erase(it);
    else
        m_intervened.push_back(segment);
    rebuildChart();
    requestIntervention();
}

void EvidenceView::setKeepOnly(bool on)
{
    if (on == m_keepOnly)
        return;
    m_keepOnly = on;
    {
        const QSignalBlocker block(m_interveneMode);
        m_interveneMode->setCurrentIndex(on ? 1 : 0);
    }
    requestIntervention();
}

void EvidenceView::resetIntervention()
{
    m_intervened.clear();
    rebuildChart();
    requestIntervention();
}

void EvidenceView::requestIntervention()
{
    const quint64 generation = ++m_generation;
    m_interventionError.clear();
    const bool nothing = m_intervened.empty() && !m_keepOnly;
    if (!m_result || !m_result->evidence.contributions.defined() || !m_runner || nothing ||
        (m_keepOnly && m_intervened.empty())) {
        m_newProbabilities.clear();
        m_interventionPending = false;
        updateSummary();
        Q_EMIT interventionUpdated();
        return;
    }
    m_interventionPending = true;
    updateSummary();
    const at::Tensor input = m_result->prepared.tensor;
    const int level = m_level;
    const auto& shown = m_result->pyramid.levels[static_cast<size_t>(level - 1)];
    std::vector<int32_t> segments(shown.nonEmpty.begin(), shown.nonEmpty.end());
    const std::vector<int32_t> chosen = m_intervened;
    const bool keepOnly = m_keepOnly;
    const AblationBaseline baseline = m_baseline;
    const auto stats = m_datasetStats;
    QPointer<EvidenceView> self(this);
    // Runs where the model lives; the answer comes back queued, and only the latest is shown.
    const bool queued = m_runner([=](FecModelImpl& model, const c10::Device& device) {
        std::vector<double> probabilities;
        QString error;
        try {
            SegmentAblator ablator(model, input.unsqueeze(0).to(device), level, segments,
                                   stats->options(baseline, model, level));
            probabilities = probabilitiesOf(keepOnly ? ablator.keepingOnly(chosen) : ablator.removing(chosen));
        } catch (const c10::Error& e) {
            error = QString::fromStdString(e.what_without_backtrace());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        } catch (...) {
            error = QStringLiteral("unknown error");
        }
        if (self)
            QMetaObject::invokeMethod(
                self.data(),
                [self, generation, probabilities = std::move(probabilities), error]() mutable {
                    if (self)
                        self->onIntervention(generation, std::move(probabilities), error);
                },
                Qt::QueuedConnection);
    });
    if (!queued) {
        m_interventionPending = false;
        m_interventionError = tr("no model is loaded");
        updateSummary();
        Q_EMIT interventionUpdated();
    }
}

void EvidenceView::setLevel(int level)
{
    if (!m_result) {
        m_level = std::max(level, 1);
        return;
    }
    level = std::clamp(level, 1, m_result->pyramid.levelCount());
    if (level == m_level)
        return;
    m_level = level;
    if (m_selection)
        m_selection->setHoveredNode(-1);
    // An intervention names segments of one level: another level starts from the whole image.
    const bool intervened = !m_intervened.empty();
    m_intervened.clear();
    recompute();  // asks again when keeping only (an empty set: the prediction is cleared)
    if (intervened && !m_keepOnly)
        requestIntervention();
}

void EvidenceView::cancelEffects()
{
    if (m_effectsCancel)
        *m_effectsCancel = true;
    const bool wasPending = m_effectsPending;
    m_effectsPending = false;
    m_progress->hide();
    m_cancelButton->hide();
    if (wasPending && m_result && m_level != m_result->pyramid.levelCount() && !m_effects.contains(m_level)) {
        m_level = m_result->pyramid.levelCount();
        recompute();
    }
}

void EvidenceView::requestEffects()
{
    if (!m_result || !m_runner) {
        m_effectsError = tr("no model is loaded");
        return;
    }
    if (m_effectsCancel)
        *m_effectsCancel = true;
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    m_effectsCancel = cancel;
    m_effectsError.clear();
    const int level = m_level;
    const auto& lv = m_result->pyramid.levels[level - 1];
    std::vector<int32_t> segments(lv.nonEmpty.begin(), lv.nonEmpty.end());
    const int batch = AblationOptions().batch;
    const int batches = static_cast<int>((segments.size() + batch - 1) / batch);
    m_progress->setRange(0, std::max(1, batches));
    m_progress->setValue(0);
    m_progress->show();
    m_cancelButton->show();
    m_effectsPending = true;
    const at::Tensor input = m_result->prepared.tensor;
    const quint64 serial = m_resultSerial;
    const AblationBaseline baseline = m_baseline;
    const auto stats = m_datasetStats;
    QPointer<EvidenceView> self(this);
    const bool queued = m_runner([=](FecModelImpl& model, const c10::Device& device) {
        if (*cancel)
            return;
        at::Tensor effects;
        QString error;
        int done = 0;
        try {
            SegmentAblator ablator(model, input.unsqueeze(0).to(device), level, segments,
                                   stats->options(baseline, model, level));
            effects = ablator.singleEffects([&] {
                if (*cancel)
                    throw std::runtime_error("cancelled");
                if (done++ > 0 && self)
                    QMetaObject::invokeMethod(
                        self.data(),
                        [self, done] {
                            if (self)
                                self->m_progress->setValue(done - 1);
                        },
                        Qt::QueuedConnection);
            });
        } catch (const c10::Error& e) {
            error = QString::fromStdString(e.what_without_backtrace());
        } catch (const std::exception& e) {
            error = QString::fromStdString(e.what());
        } catch (...) {
            error = QStringLiteral("unknown error");
        }
        if (*cancel || !self)
            return;
        QMetaObject::invokeMethod(
            self.data(),
            [self, serial, level, effects, error] {
                if (self)
                    self->onEffects(serial, level, effects, error);
            },
            Qt::QueuedConnection);
    });
    if (!queued) {
        m_effectsPending = false;
        m_progress->hide();
        m_cancelButton->hide();
        m_effectsError = tr("no model is loaded");
    }
}

void EvidenceView::onEffects(quint64 requestId, int level, at::Tensor effects, QString error)
{
    if (requestId != m_resultSerial || !m_result)
        return;
    m_effectsPending = false;
    m_progress->hide();
    m_cancelButton->hide();
    if (error.isEmpty())
        m_effects.insert(level, effects);
    else
        m_effectsError = error;
    if (level == m_level)
        recompute();
}

void EvidenceView::onIntervention(quint64 generation, std::vector<double> probabilities, QString error)
{
    if (generation != m_generation)
        return;
    m_interventionPending = false;
    m_interventionError = error;
    m_newProbabilities = std::move(probabilities);
    updateSummary();
    Q_EMIT interventionUpdated();
}

}  // namespace fec::ui
