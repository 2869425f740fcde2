#pragma once

// Turning decoded samples into model inputs: the authors' (timm) training augmentation and the
// evaluation resize, written for CPU loader threads (plain loops, no intra-op parallelism), and
// the batch-level MixUp / CutMix with smoothed soft targets.

#include <cstdint>
#include <string>

#include <ATen/Tensor.h>

#include "fec/train/random.h"

namespace fec::train {

/// ImageNet mean and standard deviation (RGB), the normalisation the model expects.
inline constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
inline constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

/// Per-sample training augmentation.
struct AugmentOptions {
    int size = 224;                                     ///< output side S
    bool randomCrop = true;                             ///< random resized crop; false: resize the whole image to S x S
    double scaleMin = 0.08, scaleMax = 1.0;             ///< crop area as a fraction of the image
    double ratioMin = 3.0 / 4.0, ratioMax = 4.0 / 3.0;  ///< crop aspect ratio (w / h), log-uniform
    double hflip = 0.5;                                 ///< probability of a horizontal flip
    double eraseProb = 0.0;                             ///< random erasing probability (timm "pixel" mode, one box)
    double eraseAreaMin = 0.02, eraseAreaMax = 1.0 / 3.0;  ///< erased area fraction
    double eraseRatioMin = 0.3;                            ///< erased box aspect ratio in [min, 1 / min], log-uniform
};

/// A crop box in source pixels (floating point, like PIL's resize box).
struct Box {
    double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

/// torchvision's RandomResizedCrop.get_params: up to 10 tries of (area, log-ratio), then the
/// central crop with the ratio clamped to the range. Integer box within a width x height image.
Box randomResizedCropBox(int width, int height, const AugmentOptions& options, Rng& rng);

/// Resamples `box` of `image` ([H, W, C] uint8 or float in [0, 1], C = 1 or 3) to an
/// outW x outH RGB float image in [0, 1], [outH, outW, 3]; grey is replicated. Separable
/// filters with PIL's support scaling (antialiased when shrinking); `bicubic` selects the cubic
/// (a = -0.5) filter instead of the triangle.
at::Tensor resampleBox(const at::Tensor& image, const Box& box, int outW, int outH, bool bicubic);

/// [H, W, 3] float in [0, 1] -> [3, H, W] float normalised with the ImageNet mean / std,
/// optionally flipped left-right.
at::Tensor normalizeToChw(const at::Tensor& hwc, bool flip = false);

/// The training transform of one sample: random resized crop (or resize), flip, normalise,
/// random erasing. Deterministic for a given `seed`. Returns [3, S, S] float.
at::Tensor trainTransform(const at::Tensor& image, const AugmentOptions& options, uint64_t seed);

/// How evaluation prepares an image.
enum class EvalResize {
    Squash,  ///< resize the whole image to S x S (bilinear)
    Crop,    ///< shorter side to floor(S / 0.9) (bicubic), centre crop S x S (the authors' evaluation)
};
/// Parses "squash" / "crop"; throws std::invalid_argument.
EvalResize parseEvalResize(const std::string& text);
/// The part of a width x height image that the evaluation transform maps onto its S x S input.
Box evalSourceBox(int width, int height, int size, EvalResize mode);
/// The evaluation transform: [3, S, S] float, normalised.
at::Tensor evalTransform(const at::Tensor& image, int size, EvalResize mode);

/// Batch-level mixing (timm's Mixup with mode "batch").
struct MixOptions {
    double mixupAlpha = 0.0;   ///< > 0 enables MixUp with lambda ~ Beta(alpha, alpha)
    double cutmixAlpha = 0.0;  ///< > 0 enables CutMix
    double prob = 1.0;         ///< probability of mixing a batch at all
    double switchProb = 0.5;   ///< with both enabled: probability of CutMix
    double smoothing = 0.1;    ///< label smoothing of the targets
};

/// Soft targets [B, classes]: one-hot smoothed (smoothing / classes off, 1 - smoothing + that on).
at::Tensor smoothOneHot(const at::Tensor& labels, int64_t classes, double smoothing);

/// Mixes `images` ([B, 3, H, W], in place) with the batch flipped along B and returns the soft
/// targets [B, classes] (smoothed). `mixed` tells whether any mixing happened. Deterministic
/// for a given `seed`.
at::Tensor mixBatch(at::Tensor& images, const at::Tensor& labels, int64_t classes, const MixOptions& options,
                    uint64_t seed, bool* mixed = nullptr);

}  // namespace fec::train
