#include "fec/ui/pyramid_panel.h"

#include <map>

#include <ATen/ATen.h>

#include <QButtonGroup>
#include <QCheckBox>
#include <QCursor>
#include <QToolTip>
#include <QComboBox>
#include <QElapsedTimer>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QToolButton>
#include <QVBoxLayout>

#include "fec/explain/concepts.h"
#include "fec/explain/explain.h"
#include "fec/figure/figure.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/ui/highlight.h"
#include "fec/ui/image_view.h"
#include "fec/ui/selection_model.h"
#include "panel_toolbar.h"
#include "view_style.h"

namespace fec::ui {

PyramidPanel::PyramidPanel(SelectionModel* selection, QWidget* parent) : QWidget(parent), m_selection(selection)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);

    auto* bar = new PanelToolbar(this);
    auto [levelGroup, levelRow] = bar->addGroup();
    levelRow->addWidget(new QLabel(tr("Level"), levelGroup));
    m_levelBox = new QHBoxLayout;
    m_levelBox->setSpacing(0);
    levelRow->addLayout(m_levelBox);
    m_levelGroup = new QButtonGroup(this);
    m_levelGroup->setExclusive(true);
    connect(m_levelGroup, &QButtonGroup::idClicked, this, &PyramidPanel::setLevel);

    const auto styleGroup = bar->addGroup();
    const auto style = bar->addStyleControls(styleGroup);
    m_modeCombo = style.mode;
    m_opacitySlider = style.opacity;
    connect(m_modeCombo, &QComboBox::currentIndexChanged, this,
            [this](int i) { setDisplayMode(static_cast<DisplayMode>(i)); });
    connect(m_opacitySlider, &QSlider::valueChanged, this, [this](int v) { setOpacity(v / 100.0); });
    m_medianCheck = new QCheckBox(tr("Median"), styleGroup.widget);
    m_medianCheck->setToolTip(tr("3×3 median filter of the block labels (display only)"));
    connect(m_medianCheck, &QCheckBox::toggled, this, &PyramidPanel::setMedianFilter);
    styleGroup.row->addWidget(m_medianCheck);

    auto [kGroup, kRow] = bar->addGroup();
    m_kmeansCheck = new QCheckBox(tr("K-means"), kGroup);
    m_kmeansCheck->setToolTip(tr("Merge the last level's clusters into k groups (colours stay stable as k changes)"));
    connect(m_kmeansCheck, &QCheckBox::toggled, this, &PyramidPanel::setKMeans);
    kRow->addWidget(m_kmeansCheck);
    m_kSlider = new QSlider(Qt::Horizontal, kGroup);
    m_kSlider->setRange(2, 2);
    m_kSlider->setFixedWidth(150);
    m_kSlider->setPageStep(1);
    m_kSlider->setToolTip(tr("Number of K-means groups (arrow keys step by one)"));
    connect(m_kSlider, &QSlider::valueChanged, this, &PyramidPanel::setK);
    kRow->addWidget(m_kSlider);
    m_kLabel = new QLabel(kGroup);
    m_kLabel->setMinimumWidth(QFontMetrics(font()).horizontalAdvance(QStringLiteral("k = 000 / 000")));
    kRow->addWidget(m_kLabel);

    auto [conceptGroup, conceptRow] = bar->addGroup();
    m_conceptsCheck = new QCheckBox(tr("Concepts"), conceptGroup);
    m_conceptsCheck->setToolTip(tr("Colour and name the segments of the concept atlas's level by their concept "
                                   "(nearest centre) instead of their cluster id; hover a segment for its concept. "
                                   "Open an atlas in the Concepts view first"));
    connect(m_conceptsCheck, &QCheckBox::toggled, this, &PyramidPanel::setShowConcepts);
    conceptRow->addWidget(m_conceptsCheck);

    const auto zoomGroup = bar->addGroup();
    auto addTool = [this, zoomGroup](const QString& text, const QString& tip, auto slot) {
        auto* b = new QToolButton(zoomGroup.widget);
        b->setText(text);
        b->setToolTip(tip);
        b->setAutoRaise(true);
        connect(b, &QToolButton::clicked, this, slot);
        zoomGroup.row->addWidget(b);
    };
    layout->addWidget(bar);

    m_view = new ImageView(this);
    m_view->setSelectionModel(selection);
    m_view->setNodeLookup([this](QPoint p) { return lookupNode(p); });
    m_view->setPlaceholderText(tr("Open an image (Ctrl+O), a folder, or drop files here."));
    layout->addWidget(m_view, 1);
    addTool(tr("Fit"), tr("Fit the image to the view (double-click the image)"), [this] { m_view->fitToWindow(); });
    addTool(tr("1:1"), tr("One image pixel per screen pixel"), [this] { m_view->actualSize(); });

    if (selection) {
        connect(selection, &SelectionModel::selectedNodeChanged, this, &PyramidPanel::updateHighlight);
        connect(selection, &SelectionModel::hoveredNodeChanged, this, &PyramidPanel::updateHighlight);
        connect(selection, &SelectionModel::hoveredNodeChanged, this, &PyramidPanel::showConceptTip);
    }
    syncControls();
}

PyramidPanel::~PyramidPanel() = default;

void PyramidPanel::setResult(ExplainResultPtr result)
{
    m_result = std::move(result);
    m_cache.clear();
    if (m_result) {
        const int levels = m_result->pyramid.levelCount();
        m_level = std::clamp(m_level, 1, std::max(1, levels));
        if (m_result->merger && m_result->merger->maxK() >= 2)
            m_k = std::clamp(m_k, 2, m_result->merger->maxK());
        m_view->setPixelMapping(pixelMappingOf(m_result->prepared.mapping));
    } else {
        m_view->setPixelMapping({});
    }
    rebuildLevelButtons();
    syncControls();
    render();
    updateHighlight();
}

void PyramidPanel::rebuildLevelButtons()
{
    for (auto* b : m_levelGroup->buttons()) {
        m_levelGroup->removeButton(b);
        b->deleteLater();
    }
    const int levels = m_result ? m_result->pyramid.levelCount() : 3;
    for (int l = 1; l <= levels; ++l) {
        auto* b = new QToolButton(this);
        b->setCheckable(true);
        b->setAutoRaise(false);
        if (m_result) {
            const auto& lv = m_result->pyramid.levels[l - 1];
            b->setText(QStringLiteral("%1 · %2×%3").arg(l).arg(lv.gridH).arg(lv.gridW));
            b->setToolTip(tr("Level %1: %2×%3 grid, %4 clusters, %5 empty")
                              .arg(l)
                              .arg(lv.gridH)
                              .arg(lv.gridW)
                              .arg(lv.nonEmpty.size())
                              .arg(lv.emptyCount()));
        } else {
            b->setText(QString::number(l));
        }
        m_levelGroup->addButton(b, l);
        m_levelBox->addWidget(b);
    }
}

void PyramidPanel::syncControls()
{
    const QSignalBlocker b1(m_modeCombo), b2(m_opacitySlider), b3(m_medianCheck), b4(m_kmeansCheck), b5(m_kSlider),
        b6(m_conceptsCheck);
    m_conceptsCheck->setEnabled(m_atlas != nullptr);
    m_conceptsCheck->setChecked(m_concepts && m_atlas);
    if (auto* b = m_levelGroup->button(m_level))
        b->setChecked(true);
    m_modeCombo->setCurrentIndex(static_cast<int>(m_mode));
    m_opacitySlider->setValue(static_cast<int>(std::lround(m_opacity * 100)));
    m_medianCheck->setChecked(m_median);
    const int maxK = m_result && m_result->merger ? m_result->merger->maxK() : 0;
    const bool kmeansAvailable = maxK >= 2;
    m_kmeansCheck->setEnabled(kmeansAvailable);
    m_kmeansCheck->setChecked(m_kmeans && kmeansAvailable);
    m_kSlider->setEnabled(kmeansAvailable && m_kmeans);
    m_kSlider->setRange(2, std::max(2, maxK));
    m_kSlider->setValue(m_k);
    m_kLabel->setText(kmeansAvailable ? QStringLiteral("k = %1 / %2").arg(m_k).arg(maxK) : QString());
    for (auto* b : m_levelGroup->buttons())
        b->setEnabled(!(m_kmeans && kmeansAvailable));
}

void PyramidPanel::setLevel(int level)
{
    const int levels = m_result ? m_result->pyramid.levelCount() : 3;
    level = std::clamp(level, 1, std::max(1, levels));
    if (level == m_level && !m_kmeans)
        return;
    m_level = level;
    m_kmeans = false;
    if (m_atlas && level != m_atlas->level)
        m_concepts = false;  // concepts exist for the atlas level only
    syncControls();
    render();
    Q_EMIT levelChanged(level);
}

void PyramidPanel::setKMeans(bool on)
{
    if (on == m_kmeans)
        return;
    m_kmeans = on;
    if (on)
        m_concepts = false;
    syncControls();
    render();
}

void PyramidPanel::setK(int k)
{
    const int maxK = m_result && m_result->merger ? m_result->merger->maxK() : k;
    k = std::clamp(k, 2, std::max(2, maxK));
    if (k == m_k && m_kmeans)
        return;
    m_k = k;
    m_kmeans = true;  // without a result (or K-means) yet this is the intent, honoured when possible
    syncControls();
    render();
    Q_EMIT kChanged(k);
}

void PyramidPanel::setDisplayMode(DisplayMode mode)
{
    if (mode == m_mode)
        return;
    m_mode = mode;
    syncControls();
    render();
}

void PyramidPanel::setOpacity(double opacity)
{
    opacity = std::clamp(opacity, 0.0, 1.0);
    if (std::abs(opacity - m_opacity) < 1e-6)
        return;
    m_opacity = opacity;
    syncControls();
    render();
}

void PyramidPanel::setMedianFilter(bool on)
{
    if (on == m_median)
        return;
    m_median = on;
    syncControls();
    render();
}

void PyramidPanel::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_dirty)
        render();
}

void PyramidPanel::render()
{
    if (!m_result)
        m_displayed = at::Tensor();
    if (!readyToRender(*this, *m_view, m_result != nullptr, m_rendered, m_dirty))
        return;
    QElapsedTimer timer;
    timer.start();
    const auto& r = *m_result;
    const auto& pyramid = r.pyramid;
    const bool kmeans = m_kmeans && r.merger && r.merger->maxK() >= 2;
    const auto segmentation = kmeans ? explain::kmeansSegmentation(*r.merger, m_k, explain::LabelGrid::Blocks)
                                     : explain::levelSegmentation(pyramid, m_level, explain::LabelGrid::Blocks);
    m_displayed = segmentation.labels;
    updateConcepts();
    const bool concepts = !kmeans && showsConcepts();
    if (concepts) {
        // Compact labels -> concept ids: one colour per concept, the same in every image.
        at::Tensor labels = segmentation.labels.to(at::kInt).contiguous().clone();
        int32_t* p = labels.data_ptr<int32_t>();
        for (int64_t i = 0; i < labels.numel(); ++i)
            p[i] = p[i] >= 0 && p[i] < static_cast<int32_t>(m_segmentConcepts.size()) ? m_segmentConcepts[p[i]] : -1;
        m_displayed = labels;
    }
    // Richer than the engine's caption: the grid size, or how many clusters K-means merged.
    QString caption;
    if (kmeans) {
        caption = tr("K-means k = %1 of %2 level-%3 clusters").arg(m_k).arg(r.merger->maxK()).arg(pyramid.levelCount());
    } else {
        const auto& lv = pyramid.levels[m_level - 1];
        caption =
            tr("Level %1 · %2×%3 grid · %4 clusters").arg(m_level).arg(lv.gridH).arg(lv.gridW).arg(lv.nonEmpty.size());
        if (lv.emptyCount() > 0)
            caption += tr(" (%1 empty)").arg(lv.emptyCount());
        if (concepts) {
            std::map<int32_t, int> counts;
            for (int32_t c : m_segmentConcepts)
                ++counts[c];
            std::vector<std::pair<int, int32_t>> ranked;
            for (const auto& [c, n] : counts)
                ranked.emplace_back(-n, c);
            std::sort(ranked.begin(), ranked.end());
            QStringList parts;
            for (size_t i = 0; i < ranked.size() && i < 4; ++i)
                parts << QStringLiteral("%1 ×%2")
                             .arg(QString::fromStdString(m_atlas->conceptLabel(ranked[i].second)))
                             .arg(-ranked[i].first);
            if (ranked.size() > 4)
                parts << QStringLiteral("…");
            caption += tr(" · concepts: %1").arg(parts.join(QStringLiteral(", ")));
        } else if (m_concepts && !m_conceptsError.isEmpty()) {
            caption += tr(" · no concepts: %1").arg(m_conceptsError);
        }
    }
    const QString key = QStringLiteral("%1%2/%3/%4/%5")
                            .arg(kmeans     ? QLatin1Char('k')
                                 : concepts ? QLatin1Char('c')
                                            : QLatin1Char('l'))
                            .arg(kmeans ? m_k : m_level)
                            .arg(static_cast<int>(m_mode))
                            .arg(std::lround(m_opacity * 100))
                            .arg(m_median);
    if (const QImage* cached = m_cache.object(key)) {
        m_rendered = *cached;
        m_lastRenderMs = 0;
    } else {
        auto style = PanelToolbar::overlayStyle(static_cast<int>(m_mode), m_opacity, r.image);
        style.medianKernel = m_median ? 3 : 0;
        const cv::Mat out = imaging::overlay(r.image, m_displayed, r.prepared.mapping, style, segmentation.colourOf);
        m_rendered = figure::toQImage(out);
        m_cache.insert(key, new QImage(m_rendered), std::max<qsizetype>(1, m_rendered.sizeInBytes() / 1024));
        m_lastRenderMs = timer.nsecsElapsed() / 1e6;
    }
    m_view->setImage(m_rendered);
    m_view->setCaption(caption);
    m_renderedId = r.requestId;
    Q_EMIT rendered();
}

int PyramidPanel::lookupNode(QPoint pixel) const
{
    if (!m_result)
        return -1;
    const int level = m_kmeans ? m_result->pyramid.levelCount() : m_level;
    return nodeAt(m_result->pyramid, level, pixel);
}

void PyramidPanel::setConceptAtlas(std::shared_ptr<const explain::Atlas> atlas)
{
    m_atlas = std::move(atlas);
    m_segmentConcepts.clear();
    m_conceptsFor = 0;
    m_conceptsError.clear();
    m_cache.clear();
    if (!m_atlas)
        m_concepts = false;
    syncControls();
    render();
}

void PyramidPanel::setShowConcepts(bool on)
{
    if (on && !m_atlas)
        on = false;
    if (on == m_concepts) {
        syncControls();
        return;
    }
    m_concepts = on;
    if (on) {
        m_kmeans = false;
        m_level = m_atlas->level;
        m_cache.clear();
    }
    syncControls();
    render();
    if (on)
        Q_EMIT levelChanged(m_level);
}

void PyramidPanel::updateConcepts()
{
    if (!m_concepts || !m_atlas || !m_result) {
        m_segmentConcepts.clear();
        m_conceptsFor = 0;
        return;
    }
    if (m_conceptsFor == m_result->requestId && (!m_segmentConcepts.empty() || !m_conceptsError.isEmpty()))
        return;
    m_conceptsFor = m_result->requestId;
    m_segmentConcepts = conceptsOrError(*m_atlas, m_result->pyramid, m_conceptsError);
}

QString PyramidPanel::conceptOfNode(int node) const
{
    if (!showsConcepts() || !m_result || node < 0 || node >= static_cast<int>(m_result->pyramid.nodes.size()))
        return {};
    const auto& n = m_result->pyramid.nodes[node];
    if (n.level != m_atlas->level)
        return {};
    const auto& lv = m_result->pyramid.levels[n.level - 1];
    const int32_t compact =
        n.cluster >= 0 && n.cluster < static_cast<int32_t>(lv.compact.size()) ? lv.compact[n.cluster] : -1;
    if (compact < 0 || compact >= static_cast<int32_t>(m_segmentConcepts.size()))
        return {};
    return QString::fromStdString(m_atlas->conceptLabel(m_segmentConcepts[compact]));
}

void PyramidPanel::showConceptTip(int node)
{
    const QString name = conceptOfNode(node);
    if (name.isEmpty() || !m_view->underMouse()) {
        m_view->setToolTip(QString());
        return;
    }
    m_view->setToolTip(name);
    QToolTip::showText(QCursor::pos(), tr("Concept: %1").arg(name), m_view);
}

void PyramidPanel::updateHighlight()
{
    showSelection(*m_view, m_result ? &m_result->pyramid : nullptr, m_selection);
}

}  // namespace fec::ui
