#include "fec/ui/compare_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "fec/explain/explain.h"
#include "fec/figure/figure.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/ui/flow_layout.h"
#include "fec/ui/highlight.h"
#include "fec/ui/image_view.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/view_sync.h"
#include "panel_toolbar.h"

namespace fec::ui {

struct ComparePanel::Pane {
    QWidget* box = nullptr;
    FlowLayout* controls = nullptr;
    QComboBox* kind = nullptr;
    QComboBox* param = nullptr;
    QSpinBox* head = nullptr;
    ImageView* view = nullptr;
    Source source;
    QString renderedKey;
};

namespace {

QString kindName(ComparePanel::Source::Kind kind)
{
    switch (kind) {
    case ComparePanel::Source::Kind::Level:
        return ComparePanel::tr("Level");
    case ComparePanel::Source::Kind::KMeans:
        return ComparePanel::tr("K-means");
    case ComparePanel::Source::Kind::EncodingHead:
        return ComparePanel::tr("Encoding head");
    case ComparePanel::Source::Kind::SecondModel:
        return ComparePanel::tr("Second model");
    }
    return {};
}

}  // namespace

ComparePanel::ComparePanel(SelectionModel* selection, QWidget* parent) : QWidget(parent), m_selection(selection)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);

    auto* bar = new PanelToolbar(this);
    auto [countGroup, countRow] = bar->addGroup();
    countRow->addWidget(new QLabel(tr("Panes"), countGroup));
    m_countCombo = new QComboBox(countGroup);
    m_countCombo->addItems({QStringLiteral("2"), QStringLiteral("3"), QStringLiteral("4")});
    m_countCombo->setCurrentIndex(m_count - 2);
    connect(m_countCombo, &QComboBox::currentIndexChanged, this, [this](int i) {
        m_userChoseCount = true;
        setPaneCount(i + 2);
    });
    countRow->addWidget(m_countCombo);
    const auto styleGroup = bar->addGroup();
    const auto style = bar->addStyleControls(styleGroup);
    m_modeCombo = style.mode;
    m_opacitySlider = style.opacity;
    m_modeCombo->setCurrentIndex(m_mode);
    connect(m_modeCombo, &QComboBox::currentIndexChanged, this, [this](int i) {
        m_mode = i;
        renderAll();
    });
    m_opacitySlider->setValue(static_cast<int>(m_opacity * 100));
    connect(m_opacitySlider, &QSlider::valueChanged, this, [this](int v) {
        m_opacity = v / 100.0;
        renderAll();
    });
    m_syncCheck = new QCheckBox(tr("Synchronise zoom"), styleGroup.widget);
    m_syncCheck->setChecked(true);
    styleGroup.row->addWidget(m_syncCheck);
    auto [diffGroup, diffRow] = bar->addGroup();
    m_diffCheck = new QCheckBox(tr("Difference"), diffGroup);
    m_diffCheck->setToolTip(tr("Mark pixels whose segment changed: each segment of the first pane is matched to the "
                               "segment of the second pane it overlaps most"));
    diffRow->addWidget(m_diffCheck);
    m_diffA = new QComboBox(diffGroup);
    m_diffB = new QComboBox(diffGroup);
    diffRow->addWidget(m_diffA);
    diffRow->addWidget(new QLabel(QStringLiteral("→"), diffGroup));
    diffRow->addWidget(m_diffB);
    m_diffLabel = new QLabel(diffGroup);
    diffRow->addWidget(m_diffLabel);
    layout->addWidget(bar);

    m_area = new QWidget(this);
    m_grid = new QGridLayout(m_area);
    m_grid->setContentsMargins(2, 2, 2, 2);
    m_grid->setSpacing(3);
    layout->addWidget(m_area, 1);
    m_area->installEventFilter(this);

    m_sync = new ViewSync(this);
    connect(m_syncCheck, &QCheckBox::toggled, m_sync, &ViewSync::setEnabled);
    for (int i = 0; i < kMaxPanes; ++i)
        buildPane(i);
    const auto diffChanged = [this] {
        setDifference(m_diffCheck->isChecked(), m_diffA->currentIndex(), m_diffB->currentIndex());
    };
    connect(m_diffCheck, &QCheckBox::toggled, this, diffChanged);
    connect(m_diffA, &QComboBox::currentIndexChanged, this, diffChanged);
    connect(m_diffB, &QComboBox::currentIndexChanged, this, diffChanged);
    if (selection) {
        connect(selection, &SelectionModel::selectedNodeChanged, this, &ComparePanel::updateHighlights);
        connect(selection, &SelectionModel::hoveredNodeChanged, this, &ComparePanel::updateHighlights);
    }
    relayout();
}

ComparePanel::~ComparePanel()
{
    qDeleteAll(m_panes);
}

void ComparePanel::buildPane(int index)
{
    auto* pane = new Pane;
    m_panes.push_back(pane);
    pane->box = new QWidget(this);
    auto* v = new QVBoxLayout(pane->box);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(2);
    auto* controls = pane->controls = new FlowLayout(nullptr, 4, 2);
    controls->setContentsMargins(4, 0, 4, 0);
    pane->kind = new QComboBox(pane->box);
    for (auto k : {Source::Kind::Level, Source::Kind::KMeans, Source::Kind::EncodingHead, Source::Kind::SecondModel})
        pane->kind->addItem(kindName(k), static_cast<int>(k));
    pane->kind->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    pane->kind->setMinimumContentsLength(6);
    pane->param = new QComboBox(pane->box);
    pane->param->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    pane->param->setMinimumContentsLength(10);
    pane->head = new QSpinBox(pane->box);
    pane->head->setPrefix(tr("head "));
    pane->head->setRange(1, 1);
    controls->addWidget(pane->kind);
    controls->addWidget(pane->param);
    controls->addWidget(pane->head);
    v->addLayout(controls);
    pane->view = new ImageView(pane->box);
    pane->view->setSelectionModel(m_selection);
    pane->view->setNodeLookup([this, index](QPoint p) { return lookupNode(index, p); });
    pane->view->setPlaceholderText(tr("No result yet"));
    v->addWidget(pane->view, 1);
    m_sync->addView(pane->view);

    const int defaults[] = {1, 2, 3, 0};
    pane->source.level = defaults[index] > 0 ? defaults[index] : 3;
    if (index == 3)
        pane->source.kind = Source::Kind::KMeans;

    connect(pane->kind, &QComboBox::currentIndexChanged, this, [this, index](int i) {
        Source s = m_panes[index]->source;
        s.kind = static_cast<Source::Kind>(m_panes[index]->kind->itemData(i).toInt());
        setSource(index, s);
    });
    connect(pane->param, &QComboBox::currentIndexChanged, this, [this, index](int i) {
        if (i < 0)
            return;
        Source s = m_panes[index]->source;
        const int value = m_panes[index]->param->itemData(i).toInt();
        if (s.kind == Source::Kind::KMeans)
            s.k = value;
        else if (s.kind == Source::Kind::EncodingHead)
            s.block = value;
        else
            s.level = value;
        setSource(index, s);
    });
    connect(pane->head, &QSpinBox::valueChanged, this, [this, index](int h) {
        Source s = m_panes[index]->source;
        s.head = h - 1;
        setSource(index, s);
    });
}

void ComparePanel::relayout()
{
    arrangePanes(true);
    for (int i = 0; i < kMaxPanes; ++i)
        m_panes[i]->box->setVisible(i < m_count);
    {
        const QSignalBlocker ba(m_diffA), bb(m_diffB), bc(m_countCombo);
        m_countCombo->setCurrentIndex(m_count - 2);
        m_diffA->clear();
        m_diffB->clear();
        for (int i = 0; i < m_count; ++i) {
            m_diffA->addItem(tr("Pane %1").arg(i + 1));
            m_diffB->addItem(tr("Pane %1").arg(i + 1));
        }
        m_diffPaneA = std::min(m_diffPaneA, m_count - 1);
        m_diffPaneB = std::min(m_diffPaneB, m_count - 1);
        if (m_diffPaneA == m_diffPaneB)
            m_diffPaneB = m_diffPaneA == 0 ? 1 : 0;
        m_diffA->setCurrentIndex(m_diffPaneA);
        m_diffB->setCurrentIndex(m_diffPaneB);
    }
    renderAll();
}

int ComparePanel::bestColumns() const
{
    // A row of panes until there is a picture to fit (four panes: two rows of two).
    const int fallback = m_count == 4 ? 2 : m_count;
    const QMargins margins = m_grid->contentsMargins();
    const int width = m_area->width() - margins.left() - margins.right();
    const int height = m_area->height() - margins.top() - margins.bottom();
    if (!m_result || m_result->image.empty() || width <= 0 || height <= 0)
        return fallback;
    const double imageW = m_result->image.cols, imageH = m_result->image.rows;
    const int spacing = m_grid->spacing();
    int best = fallback;
    double bestScale = 0;
    std::vector<int> candidates{fallback};
    for (int c = 1; c <= m_count; ++c)
        if (c != fallback)
            candidates.push_back(c);
    for (int columns : candidates) {
        const int rows = (m_count + columns - 1) / columns;
        if ((m_count + rows - 1) / rows != columns)
            continue;  // fewer columns hold the panes in as many rows
        const int paneW = (width - (columns - 1) * spacing) / columns;
        const int paneH = (height - (rows - 1) * spacing) / rows;
        int controlsH = 0;
        for (int i = 0; i < m_count; ++i)
            controlsH = std::max(controlsH, m_panes[i]->controls->heightForWidth(paneW));
        const int viewW = paneW, viewH = paneH - controlsH - m_panes[0]->box->layout()->spacing();
        const QSize viewMin = m_panes[0]->view->minimumSize();
        if (viewW < viewMin.width() || viewH < viewMin.height())
            continue;
        const double scale = std::min(viewW / imageW, viewH / imageH);
        // Another arrangement only where it shows the picture clearly larger.
        if (bestScale == 0 || scale > bestScale * 1.05) {
            best = columns;
            bestScale = scale;
        }
    }
    return best;
}

void ComparePanel::arrangePanes(bool force)
{
    const int columns = bestColumns();
    if (columns == m_columns && !force)
        return;
    m_columns = columns;
    for (auto* pane : m_panes)
        m_grid->removeWidget(pane->box);
    for (int i = 0; i < m_count; ++i)
        m_grid->addWidget(m_panes[i]->box, i / columns, i % columns);
    const int rows = (m_count + columns - 1) / columns;
    for (int i = 0; i < kMaxPanes; ++i) {
        m_grid->setColumnStretch(i, i < columns ? 1 : 0);
        m_grid->setRowStretch(i, i < rows ? 1 : 0);
    }
}

bool ComparePanel::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == m_area && event->type() == QEvent::Resize)
        arrangePanes();
    return QWidget::eventFilter(watched, event);
}

void ComparePanel::setPaneCount(int count)
{
    count = std::clamp(count, 2, kMaxPanes);
    if (count == m_count)
        return;
    m_count = count;
    relayout();
}

ComparePanel::Source ComparePanel::source(int pane) const
{
    return pane >= 0 && pane < kMaxPanes ? m_panes[pane]->source : Source();
}

ImageView* ComparePanel::view(int pane) const
{
    return pane >= 0 && pane < kMaxPanes ? m_panes[pane]->view : nullptr;
}

void ComparePanel::setSource(int pane, const Source& source)
{
    if (pane < 0 || pane >= kMaxPanes)
        return;
    m_panes[pane]->source = source;
    refreshSourceControls(pane);
    renderPane(pane);
    updateDifference();
    updateHighlights();
}

void ComparePanel::refreshSourceControls(int index)
{
    auto* pane = m_panes[index];
    auto& s = pane->source;
    const QSignalBlocker b1(pane->kind), b2(pane->param), b3(pane->head);
    pane->kind->setCurrentIndex(pane->kind->findData(static_cast<int>(s.kind)));
    pane->param->clear();
    pane->head->setVisible(s.kind == Source::Kind::EncodingHead);
    const auto& r = m_result;
    switch (s.kind) {
    case Source::Kind::Level:
    case Source::Kind::SecondModel: {
        const auto& res = s.kind == Source::Kind::SecondModel && m_secondary ? m_secondary : r;
        const int levels = res ? res->pyramid.levelCount() : 3;
        s.level = std::clamp(s.level, 1, std::max(1, levels));
        for (int l = 1; l <= levels; ++l) {
            QString text = tr("L%1").arg(l);
            if (res)
                text += QStringLiteral(" · %1×%2")
                            .arg(res->pyramid.levels[l - 1].gridH)
                            .arg(res->pyramid.levels[l - 1].gridW);
            pane->param->addItem(text, l);
            pane->param->setItemData(pane->param->count() - 1, tr("Level %1").arg(l), Qt::ToolTipRole);
        }
        pane->param->setCurrentIndex(pane->param->findData(s.level));
        break;
    }
    case Source::Kind::KMeans: {
        const int maxK = r && r->merger ? r->merger->maxK() : 0;
        if (maxK >= 2) {
            s.k = std::clamp(s.k, 2, maxK);
            for (int k = 2; k <= maxK; ++k)
                pane->param->addItem(QStringLiteral("k = %1").arg(k), k);
            pane->param->setCurrentIndex(pane->param->findData(s.k));
        }
        break;
    }
    case Source::Kind::EncodingHead: {
        const int blocks = r ? static_cast<int>(r->partitions.size()) : 0;
        if (blocks > 0) {
            s.block = std::clamp(s.block, 0, blocks - 1);
            for (int i = 0; i < blocks; ++i) {
                const auto& p = r->partitions[i];
                pane->param->addItem(tr("S%1 B%2 · %3×%4").arg(p.stage).arg(p.block).arg(p.gridH).arg(p.gridW), i);
                pane->param->setItemData(i,
                                         tr("Stage %1, block %2: %3×%4 grid, %5 heads")
                                             .arg(p.stage)
                                             .arg(p.block)
                                             .arg(p.gridH)
                                             .arg(p.gridW)
                                             .arg(p.heads),
                                         Qt::ToolTipRole);
            }
            pane->param->setCurrentIndex(s.block);
            const int heads = std::max(1, r->partitions[s.block].heads);
            s.head = std::clamp(s.head, 0, heads - 1);
            pane->head->setRange(1, heads);
            pane->head->setValue(s.head + 1);
        }
        break;
    }
    }
}

bool ComparePanel::sourceAvailable(const Source& s) const
{
    if (!m_result)
        return false;
    switch (s.kind) {
    case Source::Kind::Level:
        return s.level >= 1 && s.level <= m_result->pyramid.levelCount();
    case Source::Kind::KMeans:
        return m_result->merger && m_result->merger->maxK() >= 2;
    case Source::Kind::EncodingHead:
        return s.block >= 0 && s.block < static_cast<int>(m_result->partitions.size());
    case Source::Kind::SecondModel:
        return m_secondary && s.level >= 1 && s.level <= m_secondary->pyramid.levelCount();
    }
    return false;
}

explain::Segmentation ComparePanel::segmentationFor(const Source& s) const
{
    const auto& r = *m_result;
    const int size = static_cast<int>(r.pyramid.inputH);
    switch (s.kind) {
    case Source::Kind::Level:
        return explain::levelSegmentation(r.pyramid, s.level);
    case Source::Kind::KMeans:
        return explain::kmeansSegmentation(*r.merger, std::clamp(s.k, 2, r.merger->maxK()));
    case Source::Kind::EncodingHead: {
        const auto& p = r.partitions[s.block];
        const int head = std::clamp(s.head, 0, std::max(0, p.heads - 1));
        explain::Segmentation segmentation;
        segmentation.labels = resizeLabels(p.assign[head].reshape({p.gridH, p.gridW}).to(at::kInt), size);
        segmentation.caption = tr("Stage %1 block %2 · head %3 · %4 centres")
                                   .arg(p.stage)
                                   .arg(p.block)
                                   .arg(head + 1)
                                   .arg(p.centres)
                                   .toStdString();
        return segmentation;
    }
    case Source::Kind::SecondModel: {
        const auto& sr = *m_secondary;
        auto segmentation = explain::levelSegmentation(sr.pyramid, s.level);
        segmentation.labels = resizeLabels(segmentation.labels, size);
        segmentation.caption = tr("%1 · level %2 · %3 clusters")
                                   .arg(sr.modelName)
                                   .arg(s.level)
                                   .arg(sr.pyramid.levels[s.level - 1].nonEmpty.size())
                                   .toStdString();
        return segmentation;
    }
    }
    return {};
}

at::Tensor ComparePanel::paneLabels(int pane) const
{
    if (pane < 0 || pane >= kMaxPanes || !sourceAvailable(m_panes[pane]->source))
        return {};
    return segmentationFor(m_panes[pane]->source).labels;
}

void ComparePanel::renderPane(int index)
{
    auto* pane = m_panes[index];
    if (index >= m_count)
        return;
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    const Source& s = pane->source;
    const QString key = QStringLiteral("%1/%2/%3/%4/%5/%6/%7/%8/%9")
                            .arg(static_cast<int>(s.kind))
                            .arg(s.level)
                            .arg(s.k)
                            .arg(s.block)
                            .arg(s.head)
                            .arg(m_mode)
                            .arg(std::lround(m_opacity * 100))
                            .arg(m_result ? m_result->requestId : 0)
                            .arg(m_secondary ? m_secondary->requestId : 0);
    if (key == pane->renderedKey)
        return;
    pane->renderedKey = key;
    if (!sourceAvailable(s)) {
        pane->view->setImage(QImage());
        pane->view->setCaption(QString());
        pane->view->setPlaceholderText(!m_result ? tr("No result yet")
                                       : s.kind == Source::Kind::SecondModel
                                           ? tr("Open a comparison checkpoint (File ▸ Open comparison checkpoint…)")
                                           : tr("Not available for this model"));
        return;
    }
    const auto segmentation = segmentationFor(s);
    // Second-model labels were resized to the primary input; draw them through the primary mapping.
    const auto& mapping = m_result->prepared.mapping;
    const auto style = PanelToolbar::overlayStyle(m_mode, m_opacity, m_result->image);
    const cv::Mat out = imaging::overlay(m_result->image, segmentation.labels, mapping, style, segmentation.colourOf);
    pane->view->setPixelMapping(pixelMappingOf(mapping));
    pane->view->setImage(figure::toQImage(out));
    pane->view->setCaption(QString::fromStdString(segmentation.caption));
}

void ComparePanel::renderAll()
{
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    m_dirty = false;
    for (int i = 0; i < m_count; ++i)
        renderPane(i);
    updateDifference();
    updateHighlights();
}

bool ComparePanel::isRendered() const
{
    if (!m_result || m_dirty)
        return false;
    for (int i = 0; i < m_count; ++i)
        if (m_panes[i]->renderedKey.isEmpty() ||
            !m_panes[i]->renderedKey.endsWith(
                QStringLiteral("/%1/%2").arg(m_result->requestId).arg(m_secondary ? m_secondary->requestId : 0)))
            return false;
    return true;
}

void ComparePanel::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_dirty)
        renderAll();
}

void ComparePanel::setResult(ExplainResultPtr result)
{
    m_result = std::move(result);
    if (m_result && !m_userChoseCount) {
        // As many panes as levels (2 to 4) until the user picks a count.
        const int levels = m_result->pyramid.levelCount();
        if (std::clamp(levels, 2, kMaxPanes) != m_count) {
            m_count = std::clamp(levels, 2, kMaxPanes);
            relayout();
        }
    }
    for (int i = 0; i < kMaxPanes; ++i)
        refreshSourceControls(i);
    arrangePanes();
    renderAll();
}

void ComparePanel::setSecondaryResult(ExplainResultPtr result)
{
    const bool first = result && !m_secondary;
    m_secondary = std::move(result);
    if (first) {
        bool shown = false;
        for (int i = 0; i < m_count; ++i)
            shown = shown || m_panes[i]->source.kind == Source::Kind::SecondModel;
        if (!shown) {
            // Put the second model next to the first pane, at the same level.
            Source s;
            s.kind = Source::Kind::SecondModel;
            s.level = m_panes[0]->source.kind == Source::Kind::Level ? m_panes[0]->source.level
                                                                     : m_secondary->pyramid.levelCount();
            m_panes[1]->source = s;
        }
    }
    for (int i = 0; i < kMaxPanes; ++i)
        refreshSourceControls(i);
    renderAll();
}

void ComparePanel::setDifference(bool on, int a, int b)
{
    m_diffOn = on;
    m_diffPaneA = std::clamp(a, 0, m_count - 1);
    m_diffPaneB = std::clamp(b, 0, m_count - 1);
    {
        const QSignalBlocker b1(m_diffCheck), b2(m_diffA), b3(m_diffB);
        m_diffCheck->setChecked(on);
        m_diffA->setCurrentIndex(m_diffPaneA);
        m_diffB->setCurrentIndex(m_diffPaneB);
    }
    updateDifference();
}

void ComparePanel::updateDifference()
{
    for (auto* pane : m_panes)
        pane->view->setInputLayer(QImage());
    m_diffMask = at::Tensor();
    m_diffFraction = 0;
    if (!m_diffOn || !m_result || m_diffPaneA == m_diffPaneB || !sourceAvailable(m_panes[m_diffPaneA]->source) ||
        !sourceAvailable(m_panes[m_diffPaneB]->source)) {
        m_diffLabel->setText(m_diffOn ? tr("pick two different panes with content") : QString());
        return;
    }
    const auto a = segmentationFor(m_panes[m_diffPaneA]->source).labels;
    const auto b = segmentationFor(m_panes[m_diffPaneB]->source).labels;
    m_diffMask = segmentDifference(a, b, &m_diffFraction);
    const QImage layer = differenceLayer(m_diffMask);
    m_panes[m_diffPaneA]->view->setInputLayer(layer);
    m_panes[m_diffPaneB]->view->setInputLayer(layer);
    m_diffLabel->setText(tr("%1% of pixels changed segment").arg(m_diffFraction * 100, 0, 'f', 1));
}

int ComparePanel::lookupNode(int pane, QPoint pixel) const
{
    if (!m_result)
        return -1;
    const auto& s = m_panes[pane]->source;
    const int levels = m_result->pyramid.levelCount();
    int level = s.level;
    if (s.kind == Source::Kind::KMeans)
        level = levels;
    else if (s.kind == Source::Kind::EncodingHead && s.block < static_cast<int>(m_result->partitions.size()))
        level = std::clamp(m_result->partitions[s.block].stage, 1, levels);
    return nodeAt(m_result->pyramid, std::clamp(level, 1, levels), pixel);
}

void ComparePanel::updateHighlights()
{
    ViewHighlight h;
    if (m_result && m_selection)
        h = makeHighlight(m_result->pyramid, m_selection->selectedNode(), m_selection->hoveredNode());
    for (int i = 0; i < m_count; ++i)
        m_panes[i]->view->setHighlight(h);
}

}  // namespace fec::ui
