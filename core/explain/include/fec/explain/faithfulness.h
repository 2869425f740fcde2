#pragma once

// `fec eval --faithfulness`: do saliency maps rank the pixels the model actually uses?
//
// Metrics: deletion / insertion (Petsiuk et al., RISE, BMVC 2018), ROAD with noisy linear
// imputation (Rong et al., ICML 2022) and deletion of final segments in feature space, for FEC's
// exact evidence and common baselines (ablation, Grad-CAM, HiResCAM, gradient x input, random).
// LibTorch + std only.

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/model.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"

namespace fec::explain {

/// The saliency methods compared, in report order.
enum class SaliencyMethod {
    Evidence,   ///< FEC exact evidence density (evidenceMaps(...).density) of the predicted class
    Ablation,   ///< effect of ablating the level L-1 segment under each pixel (SegmentAblator)
    GradCam,    ///< Grad-CAM on the last stage output (the classifier's input), bilinear upsampling
    HiResCam,   ///< gradient x activation on the GroupNorm-ed final map, summed over channels, bilinear
    GradInput,  ///< sum over channels of d logit / d input x input
    Random,     ///< random pixel order (metrics averaged over FaithfulnessOptions::randomSeeds)
};
constexpr int kSaliencyMethodCount = 6;
/// "fec_evidence", "ablation_l-1", "gradcam", "hirescam", "grad_x_input", "random".
std::string saliencyMethodName(SaliencyMethod method);

struct FaithfulnessOptions {
    int steps = 32;             ///< deletion / insertion: equal steps from 0 to every pixel
    int64_t pixelsPerStep = 0;  ///< > 0: this many pixels per step instead of `steps`
    bool road = true;           ///< run ROAD (percentiles 10..90)
    double roadNoise = 0.01;    ///< std of the noise added to imputed (normalised) values
    int randomSeeds = 5;        ///< random orders averaged for the Random method
    int batch = 48;             ///< images per forward
    uint64_t seed = 0;          ///< random orders, tie-breaking and ROAD noise
    int workers = 0;            ///< images scored at once (0: at::get_num_threads(), at most 4), sharing the
                                ///< intra-op threads
};

/// Area under y(x) by the trapezoid rule; x ascending. Fewer than two points: 0.
double trapezoidAuc(const std::vector<double>& x, const std::vector<double>& y);

/// Pixel counts removed after each step (0 first, every pixel last) for `pixels` pixels.
std::vector<int64_t> stepCounts(int64_t pixels, int steps, int64_t pixelsPerStep);

/// Pixel indices (row-major) by descending saliency; ties broken by a fixed random order of `seed`.
/// `saliency`: [H, W] (any float type).
std::vector<int64_t> rankPixels(const at::Tensor& saliency, uint64_t seed);

/// Gaussian blur of a [C, H, W] image (reflect padding), separable kernel `kernel` x `kernel`.
at::Tensor gaussianBlur(const at::Tensor& image, int kernel, double sigma);

/// ROAD's noisy linear imputation: every removed pixel (removed[y * W + x] != 0) of a [C, H, W]
/// image becomes the weighted mean of its 8 neighbours (edges 1/6, diagonals 1/12, removed
/// neighbours unknown too), all solved jointly (conjugate gradients on the symmetric system),
/// plus Gaussian noise of std `noiseStd` (0: none). Returns a new float32 [C, H, W] tensor.
at::Tensor imputeRemoved(const at::Tensor& image, const std::vector<uint8_t>& removed, double noiseStd, uint64_t seed);

/// One probability curve: x = fraction of pixels removed / revealed, y = probability of the class.
struct Curve {
    std::vector<double> x, y;
    double auc = 0;
};

/// Deletion (pixels set to 0 on the normalised input: the mean colour) or insertion (from a
/// Gaussian-blurred canvas, kernel 11, sigma 5, revealing the original pixels) of one image
/// [C, S, S] (normalised) in `order` (rankPixels), scored by softmax probability of `target`.
Curve deletionCurve(FecModelImpl& model, const at::Tensor& input, int64_t target, const std::vector<int64_t>& order,
                    bool insertion, const FaithfulnessOptions& options);

/// Saliency maps of one image for its predicted class.
struct ImageSaliency {
    int64_t predicted = 0;
    std::vector<at::Tensor> maps;  ///< per method except Random: [S, S] float32 CPU
    double hiresMaxDiff = 0;       ///< max |HiResCAM per final position - evidence contribution|
    double spearman = 0;           ///< final segments: direct contribution vs ablation effect
    bool spearmanDefined = false;
};
/// `input`: [C, S, S] normalised, CPU. The model must be in eval mode.
ImageSaliency saliencyMaps(FecModelImpl& model, const at::Tensor& input);

/// Mean and standard error of the mean.
struct MetricStats {
    double mean = 0, sem = 0;
};
MetricStats statsOf(const std::vector<double>& values);

struct MethodScores {
    std::string name;
    MetricStats deletion, insertion, roadMorf, roadLerf, roadScore, segmentDeletion;
};

struct FaithfulnessReport {
    int64_t images = 0;
    int size = 0;
    std::string steps;  ///< "32" or "pixels:N"
    bool road = true;
    std::vector<MethodScores> methods;
    MetricStats segmentDeletionByAblation;  ///< final segments removed in order of their own effect
    double spearmanMean = 0, spearmanMedian = 0, spearmanQ1 = 0, spearmanQ3 = 0;
    int64_t spearmanImages = 0;
    double hiresMaxDiff = 0;  ///< over all images
    double top1 = 0;          ///< percent of images whose predicted class is the label
};

/// Runs every method and metric over `data`: `options.workers` images at once, each image's steps
/// batched. With the same intra-op threads per image the report does not depend on the number of
/// workers (LibTorch's intra-op threads are divided among them meanwhile). `progress(done, total)` after
/// each image, from a worker thread, one call at a time; `cancel` is polled between an image's
/// methods and, when set, the report covers the images finished so far. An image that cannot be
/// read stops the run with its error. With several workers it sets LibTorch's intra-op thread
/// count (at::set_num_threads) for its duration and restores it: call it where no other thread
/// runs LibTorch work meanwhile (`fec eval` does).
FaithfulnessReport faithfulnessScores(FecModelImpl& model, const train::Dataset& data, int size,
                                      train::EvalResize resize, const FaithfulnessOptions& options,
                                      const std::function<void(int64_t, int64_t)>& progress = {},
                                      const std::atomic<bool>* cancel = nullptr);

}  // namespace fec::explain
