#pragma once

// The image with one level of the segment pyramid (or a K-means merge of the last level) drawn
// over it, and the controls: level, fill/outline/both, opacity, median filter, live K-means k.

#include <memory>

#include <ATen/Tensor.h>

#include <QCache>
#include <QImage>
#include <QPointer>
#include <QWidget>

#include "fec/ui/explain_result.h"

class QButtonGroup;
class QCheckBox;
class QComboBox;
class QHBoxLayout;
class QLabel;
class QSlider;

namespace fec::explain {
struct Atlas;
}

namespace fec::ui {

class ImageView;
class SelectionModel;

class PyramidPanel : public QWidget {
    Q_OBJECT
public:
    enum class DisplayMode { Fill, Outline, Both };

    explicit PyramidPanel(SelectionModel* selection, QWidget* parent = nullptr);
    ~PyramidPanel() override;

    void setResult(ExplainResultPtr result);
    ExplainResultPtr result() const { return m_result; }
    ImageView* view() const { return m_view; }

    int level() const { return m_level; }
    bool isKMeans() const { return m_kmeans; }
    int k() const { return m_k; }
    DisplayMode displayMode() const { return m_mode; }
    double opacity() const { return m_opacity; }
    bool medianFilter() const { return m_median; }
    QSlider* kSlider() const { return m_kSlider; }

    /// Labels drawn now, on the block grid: [blockH, blockW] int32 (compact level labels, or
    /// K-means groups in K-means mode); undefined without a result.
    at::Tensor displayedLabels() const { return m_displayed; }
    /// The overlay at the image's own resolution, without highlights (for export).
    QImage renderedImage() const { return m_rendered; }
    /// Request id of the result last drawn (0 before any).
    quint64 renderedRequestId() const { return m_renderedId; }
    /// Milliseconds the last overlay took (0 when it came from the cache).
    double lastRenderMs() const { return m_lastRenderMs; }

    /// The concept atlas of the current model (null: none); enables the Concepts toggle.
    void setConceptAtlas(std::shared_ptr<const explain::Atlas> atlas);
    /// Segments of the atlas level are drawn and named by their concept (nearest centre).
    bool showsConcepts() const { return m_concepts && m_atlas && !m_segmentConcepts.empty(); }
    /// Concept of each non-empty segment of the atlas level (nonEmpty order) for the result
    /// shown; empty when concepts are not shown.
    const std::vector<int32_t>& segmentConcepts() const { return m_segmentConcepts; }
    /// "collar" (or "concept 3") for a node of the atlas level while concepts are shown, else empty.
    QString conceptOfNode(int node) const;

public Q_SLOTS:
    void setLevel(int level);
    void setKMeans(bool on);
    void setK(int k);
    void setDisplayMode(fec::ui::PyramidPanel::DisplayMode mode);
    void setOpacity(double opacity);
    void setMedianFilter(bool on);
    /// Labels the atlas level's segments by concept instead of cluster id (shows that level).
    void setShowConcepts(bool on);

Q_SIGNALS:
    void levelChanged(int level);
    void kChanged(int k);
    /// A new overlay is on screen.
    void rendered();

protected:
    void showEvent(QShowEvent* event) override;

private:
    void rebuildLevelButtons();
    void syncControls();
    void render();
    void updateHighlight();
    int lookupNode(QPoint pixel) const;
    void updateConcepts();
    void showConceptTip(int node);

    QPointer<SelectionModel> m_selection;
    ExplainResultPtr m_result;
    ImageView* m_view = nullptr;
    QHBoxLayout* m_levelBox = nullptr;
    QButtonGroup* m_levelGroup = nullptr;
    QComboBox* m_modeCombo = nullptr;
    QSlider* m_opacitySlider = nullptr;
    QCheckBox* m_medianCheck = nullptr;
    QCheckBox* m_kmeansCheck = nullptr;
    QSlider* m_kSlider = nullptr;
    QLabel* m_kLabel = nullptr;
    QCheckBox* m_conceptsCheck = nullptr;

    std::shared_ptr<const explain::Atlas> m_atlas;
    bool m_concepts = false;
    std::vector<int32_t> m_segmentConcepts;
    quint64 m_conceptsFor = 0;  // request id of the result m_segmentConcepts belongs to
    QString m_conceptsError;

    int m_level = 99;  // clamped to the last (coarsest) level when a result arrives
    bool m_kmeans = false;
    int m_k = 5;
    DisplayMode m_mode = DisplayMode::Both;
    double m_opacity = 0.5;
    bool m_median = false;
    bool m_dirty = false;

    QCache<QString, QImage> m_cache{256 * 1024};  // overlays by style key; cost in KiB
    at::Tensor m_displayed;
    QImage m_rendered;
    quint64 m_renderedId = 0;
    double m_lastRenderMs = 0;
};

}  // namespace fec::ui
