#pragma once

// Why the model predicts what it predicts: the last level's segments coloured by their exact
// contribution to a class logit (or to "class versus class") on a diverging scale, a ranked bar
// chart of those contributions linked to the image through the SelectionModel, the bias, logit and
// unlocated share, and interventions (remove segments, or keep only some) whose new prediction
// the engine's SegmentAblator computes on the model's own thread. Ablation (effects of lower levels
// and interventions) replaces a segment by a baseline: the image's mean, zero, or the dataset mean
// stored beside the model ("<checkpoint>.evidence-stats.json", written by `fec evidence-stats`).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <c10/core/Device.h>

#include <QHash>
#include <QPointer>
#include <QStringList>
#include <QWidget>

#include "fec/evidence.h"
#include "fec/explain/segment_evidence.h"
#include "fec/ui/explain_result.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QCPBars;
class QLabel;
class QProgressBar;
class QPushButton;

namespace fec::explain {
struct Atlas;
}

namespace fec::ui {

class ImageView;
class SelectionModel;

class EvidenceView : public QWidget {
    Q_OBJECT
public:
    /// Work that needs the model: called on the thread that owns it, never on the GUI thread.
    using ModelTask = std::function<void(FecModelImpl& model, const c10::Device& device)>;
    /// Queues a task where the model lives (the window hands it to the inference worker's
    /// thread); false when it could not (no model loaded).
    using ModelRunner = std::function<bool(ModelTask task)>;

    explicit EvidenceView(SelectionModel* selection, QWidget* parent = nullptr);
    ~EvidenceView() override;

    void setResult(ExplainResultPtr result);
    ExplainResultPtr result() const { return m_result; }
    /// The model's class names (index order); without them classes are called "class N".
    void setClassNames(const QStringList& names);
    /// Without a runner, interventions are disabled.
    void setModelRunner(ModelRunner runner);
    /// The checkpoint file of the model the runner runs: the "dataset" baseline reads the
    /// statistics beside it (explain::evidenceStatsPathFor) and is offered only when they exist.
    void setModelPath(const QString& checkpointPath);
    QString modelPath() const { return m_modelPath; }
    /// The concept atlas of the current model (null: none). With "Concepts" on and the atlas's
    /// level shown, the bars are named by each segment's concept (nearest centre) and hovering a
    /// segment shows its concept.
    void setConceptAtlas(std::shared_ptr<const explain::Atlas> atlas);
    void setShowConcepts(bool on);
    /// Concept names are shown now (an atlas, the toggle on, the atlas level shown).
    bool showsConcepts() const;
    /// "collar" (or "concept 3") for a raw segment of the level shown while concepts are shown,
    /// else empty.
    QString conceptOfSegment(int32_t segment) const;
    QCheckBox* conceptsCheck() const { return m_conceptsCheck; }

    /// The class explained: the top-1 class until the user (or setTargetClassName) picks one.
    int64_t targetClass() const { return m_target; }
    int64_t versusClass() const { return m_versus; }
    /// Chooses a class by name or index (explain::parseClass); applied when the result arrives.
    /// False (and the reason in the summary line) when the current model has no such class.
    bool setTargetClassName(const QString& name);

    ImageView* view() const { return m_view; }
    QComboBox* classCombo() const { return m_classCombo; }
    QComboBox* versusCombo() const { return m_versusCombo; }
    QCustomPlot* plot() const { return m_plot; }
    /// Level shown: the last level (exact contributions) or a lower one (ablation effects).
    int level() const { return m_level; }
    /// Bars drawn: one per non-empty segment of the level shown (none while its effects compute).
    int barCount() const { return static_cast<int>(m_order.size()); }
    /// Raw position ids of the level shown, in bar order (largest value first).
    const std::vector<int32_t>& rankedSegments() const { return m_order; }
    /// Value of every raw position of the level shown: the contribution (last level) or the
    /// ablation effect on the logit (difference) of the class (lower levels).
    const std::vector<double>& segmentValues() const { return m_values; }
    /// Ablation effects of a lower level are being computed.
    bool isComputingEffects() const { return m_effectsPending; }
    /// What is shown now (undefined tensors without a result).
    const EvidenceMaps& maps() const { return m_maps; }
    /// "logit … = bias … + segments … (+ not located in any pixel …)".
    QString summaryText() const;
    /// The prediction after the current intervention, or the reason there is none.
    QString interventionText() const;
    /// Softmax over every class after the current intervention; empty when none is shown.
    const std::vector<double>& interventionProbabilities() const { return m_newProbabilities; }
    /// Softmax of the unedited logits.
    const std::vector<double>& baseProbabilities() const { return m_baseProbabilities; }
    const std::vector<int32_t>& interventionSegments() const { return m_intervened; }
    bool keepOnly() const { return m_keepOnly; }
    /// The overlay at the image's own resolution (for export and tests).
    QImage renderedImage() const { return m_rendered; }
    /// What "current view" exports: the overlay (enlarged without smoothing to at least 480 pixels
    /// wide), under it what it shows (level, class, contrast) and the diverging legend with its
    /// values (-range, -range/2, 0, +range/2, +range). Null when nothing is rendered.
    QImage exportImage() const;
    /// Symmetric range of the diverging scale shown (largest |value| of the level shown).
    double range() const { return m_range; }
    /// The name of class `index` as the class chooser shows it ("class N" without names).
    QString className(int64_t index) const;
    /// The report of what is shown (class, contrast): exact contributions and, for every level
    /// whose ablation effects were computed (with the current baseline), those effects; null
    /// without a result or evidence. For the figure export (figure::evidenceRow).
    std::shared_ptr<const explain::EvidenceReport> report() const;
    /// Ablation baseline for lower levels' effects and for interventions.
    AblationBaseline baseline() const { return m_baseline; }
    QComboBox* baselineCombo() const { return m_baselineCombo; }
    quint64 renderedRequestId() const { return m_renderedId; }

public Q_SLOTS:
    void setTargetClass(qint64 index);
    /// -1: no contrast class.
    void setVersusClass(qint64 index);
    /// Adds a segment of the level shown (raw id) to the intervention set, or takes it out. The
    /// set belongs to that level: setLevel() empties it.
    void toggleSegment(qint32 segment);
    void setKeepOnly(bool on);
    void resetIntervention();
    /// 1..L; levels below the last show every segment's ablation effect, computed off the GUI
    /// thread once per image and level (all classes at once).
    void setLevel(int level);
    /// Stops computing ablation effects (the last level is shown again).
    void cancelEffects();
    /// Changes what replaces an ablated segment: drops the effects computed with the old baseline,
    /// recomputes those of the level shown (in the worker, cancellable) and the intervention.
    /// Dataset is refused (false) unless the statistics file exists beside the model.
    bool setBaseline(AblationBaseline baseline);

Q_SIGNALS:
    /// A new overlay and chart are on screen.
    void rendered();
    /// The prediction after an intervention arrived (or the intervention was reset).
    void interventionUpdated();

protected:
    void showEvent(QShowEvent* event) override;

private:
    void updateConcepts();
    void showConceptTip(int node);
    void rebuildClassCombos();
    void recompute();
    void render();
    void rebuildChart();
    void updateHighlight();
    void updateSummary();
    void requestIntervention();
    void requestEffects();
    void onEffects(quint64 requestId, int level, at::Tensor effects, QString error);
    void onIntervention(quint64 generation, std::vector<double> probabilities, QString error);
    int segmentAtRank(double key) const;
    int nodeOfSegment(int32_t segment) const;
    void updateBaselineChoices();
    // Forgets the ablation effects of every level and stops those being computed.
    void dropEffects();
    QString baselineDescription() const;

    QPointer<SelectionModel> m_selection;
    ExplainResultPtr m_result;
    QStringList m_classNames;
    ModelRunner m_runner;
    QString m_requestedClass;  // from setTargetClassName, resolved against the class names
    bool m_userChoseClass = false;
    int64_t m_target = 0;
    int64_t m_versus = -1;
    int m_level = 0;  // 0: the last level
    EvidenceMaps m_maps;
    std::vector<double> m_values;
    at::Tensor m_shownMap;  // [inputH, inputW] float: what the overlay draws
    double m_range = 1;
    std::vector<int32_t> m_order;
    QString m_classError;

    ImageView* m_view = nullptr;
    QComboBox* m_classCombo = nullptr;
    QComboBox* m_versusCombo = nullptr;
    QCheckBox* m_interveneCheck = nullptr;
    QCheckBox* m_conceptsCheck = nullptr;
    std::shared_ptr<const explain::Atlas> m_atlas;
    bool m_concepts = false;
    std::vector<int32_t> m_segmentConcepts;        // per non-empty segment of the atlas level
    const ExplainResult* m_conceptsFor = nullptr;  // the result m_segmentConcepts belongs to
    QString m_conceptsError;
    QComboBox* m_interveneMode = nullptr;
    QPushButton* m_resetButton = nullptr;
    QWidget* m_legend = nullptr;
    QLabel* m_summary = nullptr;
    QLabel* m_interventionLabel = nullptr;
    QComboBox* m_levelCombo = nullptr;
    QComboBox* m_baselineCombo = nullptr;
    QProgressBar* m_progress = nullptr;
    QPushButton* m_cancelButton = nullptr;
    QCustomPlot* m_plot = nullptr;
    QCPBars* m_positiveBars = nullptr;
    QCPBars* m_negativeBars = nullptr;
    QCPBars* m_markBars = nullptr;   // segments in the intervention set
    QCPBars* m_hoverBars = nullptr;  // the hovered or selected segment

    std::vector<int32_t> m_intervened;
    bool m_keepOnly = false;
    quint64 m_generation = 0;
    std::vector<double> m_baseProbabilities, m_newProbabilities;
    QString m_interventionError;
    bool m_interventionPending = false;

    QHash<int, at::Tensor> m_effects;  // level -> [segments, classes] effects of the current image
    bool m_effectsPending = false;
    QString m_effectsError;
    std::shared_ptr<std::atomic<bool>> m_effectsCancel;
    quint64 m_resultSerial = 0;  // tells answers for an older result (or baseline) apart

    AblationBaseline m_baseline = AblationBaseline::Mean;
    QString m_modelPath;
    struct DatasetStats;
    std::shared_ptr<DatasetStats> m_datasetStats;  // read once per model file, on the model's thread

    QImage m_rendered;
    quint64 m_renderedId = 0;
    bool m_dirty = false;
};

}  // namespace fec::ui
