#pragma once

// Segment evidence: why FEC predicts what it predicts.
//
// Exact evidence. FEC's classifier is GroupNorm (one group, with its affine) over the final map,
// a mean over its N positions, then a linear head, so every class logit splits exactly into one
// term per final position:
//     logit_c = b_c + sum_j (1/N) W_c . y_j,   y = GroupNorm(final map)
// and final position j is final cluster j, whose pixels the pyramid's last level names. The terms
// are exact, not an approximation; but GroupNorm's statistics are shared by all positions and the
// last stage mixes positions, so a term is not the causal effect of removing that segment.
//
// Causal effect (ablation). A level-l segment is one position of ClusterPool l's output.
// Ablating it replaces that position's feature vector by a baseline and runs the rest of the
// network; its effect is logits before minus logits after, for every class.
//
// LibTorch + std only.

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/analysis.h"
#include "fec/model.h"

namespace fec {

/// Every class logit of a batch split over the final positions.
struct Evidence {
    at::Tensor contributions;      ///< [B, classes, N] float32: (1/N) W_c . y_j
    at::Tensor bias;               ///< [classes] float32: the head's bias
    int64_t gridH = 0, gridW = 0;  ///< final grid, N = gridH * gridW
    /// bias + contributions summed over positions: [B, classes] (equals the model's logits).
    at::Tensor logits() const;
};

/// Thrown for a model whose head is not "GroupNorm + mean + linear" (a fork_feat backbone).
class NoClassifierError : public std::invalid_argument {
public:
    NoClassifierError();
};

/// Splits the logits of `finalMap` (Trace::finalMap, [B, D3, h, w], any device) exactly. Runs in
/// float64 internally, returns float32 CPU tensors. Throws NoClassifierError for backbones and
/// std::invalid_argument for a map of the wrong width.
Evidence computeEvidence(FecModelImpl& model, const at::Tensor& finalMap);

/// One image's evidence for a class, or for "class versus another" (W_a - W_b), located in pixels.
struct EvidenceMaps {
    int64_t target = 0;           ///< class index
    int64_t versus = -1;          ///< contrast class, or -1
    std::vector<double> segment;  ///< [N] contribution of each final position
    std::vector<int64_t> pixels;  ///< [N] model-input pixels of each final cluster (0: empty)
    double bias = 0;              ///< b_target (- b_versus)
    double logit = 0;             ///< bias + sum(segment): the logit (difference)
    double unlocated = 0;         ///< sum of the contributions of empty final clusters
    at::Tensor total;             ///< [inputH, inputW] float32: every pixel shows its segment's contribution
    at::Tensor density;           ///< [inputH, inputW] float32: contribution / segment pixels; sums to
                                  ///< logit - bias - unlocated
};

/// Locates image `index` of `evidence` through the pyramid's last level. Throws
/// std::out_of_range naming the valid range for a class outside [0, classes).
EvidenceMaps evidenceMaps(const Evidence& evidence, const SegmentPyramid& pyramid, int64_t target, int64_t versus = -1,
                          int64_t index = 0);

/// What replaces an ablated position.
enum class AblationBaseline {
    Mean,     ///< mean of the image's non-empty positions at that level (default)
    Zero,     ///< zeros
    Dataset,  ///< a mean feature per level over a dataset (AblationOptions::datasetMean)
};

/// "mean", "zero", "dataset"; throws std::invalid_argument listing them.
AblationBaseline parseAblationBaseline(const std::string& text);
std::string ablationBaselineName(AblationBaseline baseline);

struct AblationOptions {
    AblationBaseline baseline = AblationBaseline::Mean;
    at::Tensor datasetMean;  ///< [dims[level]] for Dataset
    int batch = 64;          ///< ablated copies run per forward
};

/// Ablation of one image's segments at one level. The pool output is computed once; every
/// query reruns only the network after that pool. Runs under c10::InferenceMode itself.
class SegmentAblator {
public:
    /// `input`: [1, C, H, W] on the model's device (a classification model). `segments`: the raw
    /// position ids that may be ablated (usually the level's non-empty clusters, which also
    /// define the Mean baseline). Throws std::invalid_argument for a bad level, segment or baseline.
    SegmentAblator(FecModelImpl& model, const at::Tensor& input, int level, std::vector<int32_t> segments,
                   const AblationOptions& options = {});

    int level() const { return m_level; }
    const std::vector<int32_t>& segments() const { return m_segments; }
    /// Logits of the unedited image: [classes] float32 CPU.
    const at::Tensor& baseLogits() const { return m_base; }
    /// The baseline vector that replaces a position: [D] float32 CPU.
    at::Tensor baseline() const;

    /// Effect of removing each segment alone, all in batched forwards: [segments, classes]
    /// float32 CPU, row i = baseLogits - logits with segments()[i] replaced. `cancel` is called
    /// between batches and may throw to stop.
    at::Tensor singleEffects(const std::function<void()>& cancel = {});

    /// Logits with `remove` replaced by the baseline ([classes] float32 CPU).
    at::Tensor removing(const std::vector<int32_t>& remove);
    /// Logits for several removal sets at once (batched forwards): [sets, classes] float32 CPU,
    /// row i = removing(sets[i]).
    at::Tensor removingEach(const std::vector<std::vector<int32_t>>& sets);
    /// Logits with every position but `keep` (empty positions included) replaced.
    at::Tensor keepingOnly(const std::vector<int32_t>& keep);

private:
    at::Tensor edited(const std::vector<int32_t>& positions) const;

    FecModelImpl& m_model;
    int m_level;
    std::vector<int32_t> m_segments;
    at::Tensor m_pooled;    // [1, D, h, w] on the model's device
    at::Tensor m_baseline;  // [D] on the model's device
    at::Tensor m_base;      // [classes] CPU
    int m_batch;
};

}  // namespace fec
