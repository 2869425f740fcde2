#pragma once

// The one explain pipeline: image -> traced forward -> segment pyramid -> K-means merges ->
// label maps ready to overlay. `fec explain` and the explorer's inference worker both call it;
// neither computes any of these steps itself.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <opencv2/core.hpp>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/evidence.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/model.h"

namespace fec::explain {

/// How to explain an image.
struct ExplainOptions {
    int size = 0;            ///< model input side; 0: inputSizeFor(checkpoint)
    std::string preprocess;  ///< "squash" or "crop"; empty: preprocessFor(checkpoint)
    bool blocks = true;      ///< also trace every ClusterBlock (encoding heads, partitions)
    imaging::MergeFeatures features = imaging::MergeFeatures::KeyCentres;
    int topK = 5;  ///< classes kept in Explanation::top
};

/// One image under one model.
struct Explanation {
    cv::Mat image;                    ///< original image, RGB 8-bit
    imaging::PreparedImage prepared;  ///< model input (S x S) and the mapping back to the image
    int size = 0;                     ///< S
    imaging::Preprocess preprocess = imaging::Preprocess::Squash;
    Trace trace;  ///< pools (and blocks when asked), CPU tensors
    SegmentPyramid pyramid;
    std::vector<EncodingPartition> partitions;  ///< one per ClusterBlock when blocks were traced
    /// K-means of the last level; null when the last pool has no features. Not thread-safe.
    std::shared_ptr<imaging::ClusterMerger> merger;
    std::vector<ClassScore> top;  ///< most probable classes; empty for a backbone
    Evidence evidence;            ///< exact split of the logits; undefined tensors for a backbone
    double inferenceMs = 0;       ///< traced forward
    double analysisMs = 0;        ///< pyramid + partitions + merger set-up + top classes
};

/// Called between stages; throws (any exception) to stop the run.
using CancelCheck = std::function<void()>;

/// Decodes `imagePath`, prepares it as `options` and the checkpoint say, runs the traced forward
/// on `device` and analyses the result. Opens c10::InferenceMode itself. Throws
/// std::runtime_error naming the image for unreadable images and invalid sizes; whatever
/// `cancel` throws passes through unchanged.
Explanation explainImage(FecModelImpl& model, const CheckpointInfo& info, const c10::Device& device,
                         const std::string& imagePath, const ExplainOptions& options = {},
                         const CancelCheck& cancel = {});

/// A label map to draw over the image, with its colours and a caption.
struct Segmentation {
    at::Tensor labels;                           ///< [h, w] int32 over the model input
    const std::vector<int>* colourOf = nullptr;  ///< palette index per label (K-means); owned by the merger
    std::string caption;                         ///< "Level 2 · 41 clusters (3 empty)", "K-means k = 3"
};

/// Where the labels are sampled: every model-input pixel, or every pixel block (cheaper to draw).
enum class LabelGrid { Pixels, Blocks };

/// Level `level` (1-based) of the pyramid. Throws std::invalid_argument naming the valid range.
Segmentation levelSegmentation(const SegmentPyramid& pyramid, int level, LabelGrid grid = LabelGrid::Pixels);
/// The K-means merge of the last level into k groups. Throws std::invalid_argument unless
/// 2 <= k <= merger.maxK().
Segmentation kmeansSegmentation(imaging::ClusterMerger& merger, int k, LabelGrid grid = LabelGrid::Pixels);

/// "Level 2 · 41 clusters (3 empty)": the caption every figure and view uses for a level.
std::string levelCaption(const SegmentPyramid& pyramid, int level);

}  // namespace fec::explain
