#pragma once

// Decoding user images and turning them into model inputs (OpenCV on top of the engine).

#include <cstdint>
#include <string>

#include <ATen/Tensor.h>
#include <opencv2/core.hpp>

#include "fec/imaging/image_decode.h"

namespace fec::imaging {

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
    int inputSize = 0;  ///< S
    int imageWidth = 0, imageHeight = 0;
};

/// A prepared input: the S x S RGB picture the model sees and its normalised tensor.
struct PreparedImage {
    cv::Mat rgb;        ///< S x S, CV_8UC3
    at::Tensor tensor;  ///< [3, S, S] float32, ImageNet mean/std normalised
    InputMapping mapping;
};

/// Resizes (and crops) an RGB image and normalises it. Throws std::invalid_argument for S < 8.
PreparedImage prepareImage(const cv::Mat& rgb, int size, Preprocess mode);

/// (u8 / 255 - mean[c]) / std[c] in float32, the order torchvision uses: [3, H, W].
at::Tensor normalizeRgb(const cv::Mat& rgb);

}  // namespace fec::imaging
