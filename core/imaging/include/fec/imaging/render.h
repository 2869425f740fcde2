#pragma once

// Drawing label maps: palette, colourised maps, overlays on the user's image, highlights, and
// atomic image files. All colour images are 8-bit RGB (CV_8UC3).

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <opencv2/core.hpp>

#include "fec/imaging/image.h"

namespace fec::imaging {

/// Number of hand-picked palette colours (Okabe-Ito without black, then Paul Tol's "muted" and
/// "light" sets without their grey); later indices follow a golden-ratio hue sequence.
constexpr int kFixedPaletteSize = 24;

/// Colour (RGB) of a label index, the same in every run. Colour-blind-safe hand-picked colours
/// first; beyond those, hues advance by the golden ratio with alternating saturation and value so
/// that neighbouring indices stay distinct. Negative indices are black.
cv::Vec3b paletteColour(int index);

/// How labels are drawn over an image.
struct OverlayStyle {
    enum class Mode { Fill, Outline, Both };
    Mode mode = Mode::Both;
    double opacity = 0.45;  ///< fill weight in [0, 1]; 1 paints the palette colour exactly
    /// Median filter of the label map for display only, in label-map pixels (0 = off, else odd).
    /// Kernels above 5 apply only when the labels fit in 8 bits (at most 255 labels); otherwise 5.
    int medianKernel = 0;
    int outlineThickness = 1;  ///< outline width in image pixels
    cv::Vec3b outlineColour{255, 255, 255};
};

/// Colours a label map [h, w] (int32): label i gets paletteColour(colourOf ? (*colourOf)[i] : i),
/// negative labels (and labels beyond colourOf) are black. Returns h x w CV_8UC3 RGB.
/// Throws std::invalid_argument for a non-2-D map or a label of 2^20 or more.
cv::Mat colourise(const at::Tensor& labels, const std::vector<int>* colourOf = nullptr);

/// Draws a label map of the model input over the original image. `labels` ([h, w] int32) covers
/// the S x S model input (any h, w: pixel labels, block labels); it is mapped back through
/// `mapping` with nearest neighbour (original pixel x takes the label at model coordinate
/// floor((x + 0.5 - offsetX) / scaleX)). Pixels outside the crop are darkened by 50% and get no
/// label; negative labels leave the image as it is. Returns an RGB image of the image's size.
/// Throws std::invalid_argument when the image does not match the mapping, the labels are not
/// 2-D, or a label is 2^20 or more.
cv::Mat overlay(const cv::Mat& imageRgb, const at::Tensor& labels, const InputMapping& mapping,
                const OverlayStyle& style, const std::vector<int>* colourOf = nullptr);
/// Same, drawn into `out`, whose buffer is reused when it already has the image's size and type.
/// Redrawing a large photo (style changes, a new k) should keep one `out`: a fresh 12 MP buffer
/// can cost more in page faults than the drawing. When `out` is the image itself, a new buffer is
/// allocated.
void overlayInto(const cv::Mat& imageRgb, const at::Tensor& labels, const InputMapping& mapping,
                 const OverlayStyle& style, cv::Mat& out, const std::vector<int>* colourOf = nullptr);

/// Emphasises a selection on an already drawn image (same size as the mapping's image): dims
/// everything outside the block mask ([blockH * blockW], non-zero = selected, on the model input's
/// block grid) to 35% and outlines the selection in `colour` (about 1/300 of the shorter side,
/// at least 2 px). Throws std::invalid_argument on size mismatches.
cv::Mat highlight(const cv::Mat& baseRgb, const std::vector<uint8_t>& blockMask, int64_t blockH, int64_t blockW,
                  const InputMapping& mapping, cv::Vec3b colour);
/// Same, drawn into `out` (reused like overlayInto's).
void highlightInto(const cv::Mat& baseRgb, const std::vector<uint8_t>& blockMask, int64_t blockH, int64_t blockW,
                   const InputMapping& mapping, cv::Vec3b colour, cv::Mat& out);

/// Samples a map of the model input ([h, w] float, covering the S x S input) at every pixel of the
/// original image through `mapping` (nearest, as overlay() does). Pixels outside the crop get
/// `outside`. Returns imageHeight x imageWidth CV_32F.
cv::Mat mapToImage(const at::Tensor& values, const InputMapping& mapping, float outside = 0.f);

/// Diverging colour for t in [-1, 1] (clamped): blue for negative, white at 0, red for positive
/// (ColorBrewer RdBu ends).
cv::Vec3b divergingColour(double t);

/// Draws a signed map of the model input ([h, w] float) over the image on a diverging scale that
/// is symmetric in [-range, range]: zero is transparent, +-range is painted at `maxOpacity`.
/// Pixels outside the crop are darkened by 50%. Throws std::invalid_argument for a non-2-D map,
/// a range <= 0 or an image that does not match the mapping.
cv::Mat divergingOverlay(const cv::Mat& imageRgb, const at::Tensor& values, const InputMapping& mapping, double range,
                         double maxOpacity = 0.8);

/// Encodes an image in the format of the path's extension and writes it atomically. Accepts
/// CV_8UC3 (RGB), CV_8UC4 (RGBA), CV_8UC1 and CV_16UC1 (only .png, .tif, .tiff: 16-bit grey).
/// Throws std::runtime_error naming the file.
void writeImageAtomic(const std::string& path, const cv::Mat& rgbOr16bit);

}  // namespace fec::imaging
