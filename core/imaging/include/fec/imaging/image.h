#pragma once

// Decoding user images and turning them into model inputs (OpenCV on top of the engine).

#include <cstdint>
#include <stdexcept>
#include <string>

#include <ATen/Tensor.h>
#include <opencv2/core.hpp>

namespace fec::imaging {

/// An image that cannot be used; `what()` names the file and the problem.
class ImageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ImageLoadOptions {
    int64_t maxPixels = 178'956'970;  ///< refuse larger images (decompression bombs); PIL's limit
    uint64_t maxFileBytes = 1ull << 30;
};

/// Decodes an image file to 8-bit RGB (CV_8UC3): grey is replicated, alpha is composited over
/// white, 16-bit is scaled to 8-bit, JPEG EXIF orientation is applied. Throws ImageError.
cv::Mat loadImageRgb(const std::string& path, const ImageLoadOptions& options = {});
/// Same, from encoded bytes; `name` is used in messages.
cv::Mat decodeImageRgb(const std::vector<uint8_t>& bytes, const std::string& name,
                       const ImageLoadOptions& options = {});

/// How an image becomes a square model input.
enum class Preprocess {
    Squash,  ///< resize to S x S, bilinear (the authors' visualisation)
    Crop,    ///< shorter side to floor(S / 0.9), bicubic, centre crop S x S (the authors' evaluation)
};
/// Parses "squash" / "crop"; throws std::invalid_argument.
Preprocess parsePreprocess(const std::string& text);
std::string preprocessName(Preprocess mode);

/// Maps model-input pixel coordinates (u, v) to original-image coordinates:
/// x = offsetX + u * scaleX, y = offsetY + v * scaleY.
struct InputMapping {
    double scaleX = 1, scaleY = 1, offsetX = 0, offsetY = 0;
    int inputSize = 0;                 ///< S
    int imageWidth = 0, imageHeight = 0;
};

/// A prepared input: the S x S RGB picture the model sees and its normalised tensor.
struct PreparedImage {
    cv::Mat rgb;         ///< S x S, CV_8UC3
    at::Tensor tensor;   ///< [3, S, S] float32, ImageNet mean/std normalised
    InputMapping mapping;
};

/// Resizes (and crops) an RGB image and normalises it. Throws std::invalid_argument for S < 8.
PreparedImage prepareImage(const cv::Mat& rgb, int size, Preprocess mode);

/// (u8 / 255 - mean[c]) / std[c] in float32, the order torchvision uses: [3, H, W].
at::Tensor normalizeRgb(const cv::Mat& rgb);

}  // namespace fec::imaging
