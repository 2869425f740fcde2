#pragma once

// Segment evidence of one explained image, for one class (or "class versus class"): the exact
// contribution of every final segment, the evidence density in pixels (model input and the
// image's own resolution), and the ablation effect of every segment of every level. `fec
// explain --evidence` and the window's Evidence view both call this.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <opencv2/core.hpp>

#include "fec/evidence.h"
#include "fec/explain/explain.h"

namespace fec::explain {

/// A class named by the user: its name (exact, then case-insensitive) or its index. Throws
/// std::invalid_argument listing the valid names, or giving the range for an index.
int64_t parseClass(const std::string& text, const std::vector<std::string>& names);

/// One segment of one level with its evidence.
struct SegmentEvidence {
    int level = 0;                       ///< 1..L
    int32_t segment = 0;                 ///< raw position id on the level's grid (the ablated position)
    int node = -1;                       ///< hierarchy node (SegmentPyramid::nodes)
    int64_t pixels = 0;                  ///< model-input pixels
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  ///< bounding box in model-input pixels, [x0, x1) x [y0, y1)
    /// Last level: the exact term of the logit split. Lower levels: the evidence density summed
    /// over the segment's pixels (its share of its final segments' terms).
    double contribution = 0;
    /// Logit (difference) before minus after replacing the segment by the baseline; NaN when
    /// ablation was not asked for.
    double effect = std::numeric_limits<double>::quiet_NaN();
};

struct EvidenceOptions {
    int64_t target = 0;    ///< class index
    int64_t versus = -1;   ///< contrast class, or -1
    bool ablation = true;  ///< compute every segment's effect (batched forwards per level)
    AblationOptions ablationOptions;
    /// The Dataset baseline's mean per level (1..L at 0..L-1, EvidenceStats::levelMeans): level l
    /// ablates with datasetMeans[l-1] instead of ablationOptions.datasetMean when given.
    std::vector<at::Tensor> datasetMeans;
    /// Optional cache of every class's ablation effects per level (index l-1: [segments, classes]
    /// float32, SegmentAblator::singleEffects). Empty entries are computed and stored; filled ones
    /// are reused, so several classes of one image (same baseline) ablate each level once.
    std::vector<at::Tensor>* effectsCache = nullptr;
};

struct EvidenceReport {
    EvidenceMaps maps;  ///< at model-input resolution
    /// Evidence density at the image's own resolution (imageHeight x imageWidth CV_32F): the model
    /// input's density divided by the image pixels each model pixel covers, so that both sum to
    /// the located evidence (up to the nearest-neighbour sampling); 0 outside a crop.
    cv::Mat densityAtImage;
    std::vector<SegmentEvidence> segments;  ///< level by level, in the level's nonEmpty order
};

/// Computes the report for `explanation` (which must carry its evidence: a classification model).
/// `model` and `device` are the ones that explained it (for ablation). `cancel` is called between
/// levels and batches and may throw. Throws NoClassifierError for backbones and std::out_of_range
/// for a class outside the model's range.
EvidenceReport segmentEvidence(FecModelImpl& model, const c10::Device& device, const Explanation& explanation,
                               const EvidenceOptions& options, const CancelCheck& cancel = {});

/// The exact part of segmentEvidence() (no ablation: every effect NaN), which needs no model:
/// the evidence maps, the density at the image's own resolution and every segment of every level
/// with its contribution. A few milliseconds: the window calls it on the GUI thread. Throws
/// NoClassifierError when `explanation` carries no evidence and std::out_of_range for a class
/// outside the model's range.
EvidenceReport exactSegmentEvidence(const Explanation& explanation, int64_t target, int64_t versus = -1);

/// "level,segment,pixels,x0,y0,x1,y1,contribution,ablation_effect\n" and one line per segment.
std::string segmentsCsv(const EvidenceReport& report);

}  // namespace fec::explain
