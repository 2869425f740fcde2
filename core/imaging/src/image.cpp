#include "fec/imaging/image.h"

#include <cmath>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

namespace fec::imaging {

namespace {

const float kMean[3] = {0.485f, 0.456f, 0.406f};
const float kStd[3] = {0.229f, 0.224f, 0.225f};

}  // namespace

Preprocess parsePreprocess(const std::string& text)
{
    if (text == "squash")
        return Preprocess::Squash;
    if (text == "crop")
        return Preprocess::Crop;
    throw std::invalid_argument("--preprocess must be squash or crop (got '" + text + "')");
}

std::string preprocessName(Preprocess mode)
{
    return mode == Preprocess::Squash ? "squash" : "crop";
}

at::Tensor normalizeRgb(const cv::Mat& rgb)
{
    CV_Assert(rgb.type() == CV_8UC3);
    cv::Mat contiguous = rgb.isContinuous() ? rgb : rgb.clone();
    auto hwc = at::from_blob(contiguous.data, {contiguous.rows, contiguous.cols, 3}, at::kByte);
    auto chw = hwc.permute({2, 0, 1}).to(at::kFloat).div(255);
    auto mean = at::from_blob(const_cast<float*>(kMean), {3, 1, 1}, at::kFloat);
    auto std = at::from_blob(const_cast<float*>(kStd), {3, 1, 1}, at::kFloat);
    return chw.sub(mean).div(std).contiguous();
}

PreparedImage prepareImage(const cv::Mat& rgb, int size, Preprocess mode)
{
    if (size < 8)
        throw std::invalid_argument("input size must be at least 8");
    PreparedImage out;
    auto& map = out.mapping;
    map.inputSize = size;
    map.imageWidth = rgb.cols;
    map.imageHeight = rgb.rows;
    if (mode == Preprocess::Squash) {
        cv::resize(rgb, out.rgb, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
        map.scaleX = static_cast<double>(rgb.cols) / size;
        map.scaleY = static_cast<double>(rgb.rows) / size;
    } else {
        const int shorter = static_cast<int>(std::floor(size / 0.9));
        int w, h;
        if (rgb.cols <= rgb.rows) {
            w = shorter;
            h = static_cast<int>(static_cast<int64_t>(shorter) * rgb.rows / rgb.cols);
        } else {
            h = shorter;
            w = static_cast<int>(static_cast<int64_t>(shorter) * rgb.cols / rgb.rows);
        }
        cv::Mat resized;
        cv::resize(rgb, resized, cv::Size(w, h), 0, 0, cv::INTER_CUBIC);
        const int left = static_cast<int>(std::lround((w - size) / 2.0));
        const int top = static_cast<int>(std::lround((h - size) / 2.0));
        out.rgb = resized(cv::Rect(left, top, size, size)).clone();
        map.scaleX = static_cast<double>(rgb.cols) / w;
        map.scaleY = static_cast<double>(rgb.rows) / h;
        map.offsetX = left * map.scaleX;
        map.offsetY = top * map.scaleY;
    }
    out.tensor = normalizeRgb(out.rgb);
    return out;
}

}  // namespace fec::imaging
