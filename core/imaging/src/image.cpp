#include "fec/imaging/image.h"

#include <cmath>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/atomic_file.h"

namespace fec::imaging {

namespace {

const float kMean[3] = {0.485f, 0.456f, 0.406f};
const float kStd[3] = {0.229f, 0.224f, 0.225f};

cv::Mat to8Bit(const cv::Mat& m)
{
    if (m.depth() == CV_8U)
        return m;
    cv::Mat out;
    if (m.depth() == CV_16U)
        m.convertTo(out, CV_8U, 1.0 / 257.0);
    else if (m.depth() == CV_32F || m.depth() == CV_64F)
        m.convertTo(out, CV_8U, 255.0);  // float images are in [0, 1]
    else
        m.convertTo(out, CV_8U);
    return out;
}

}  // namespace

cv::Mat decodeImageRgb(const std::vector<uint8_t>& bytes, const std::string& name, const ImageLoadOptions& options)
{
    if (bytes.empty())
        throw ImageError(name + ": the file is empty");
    cv::Mat raw;
    try {
        // The header tells size and channels before the full decode allocates anything large.
        raw = cv::imdecode(bytes, cv::IMREAD_UNCHANGED | cv::IMREAD_IGNORE_ORIENTATION);
    } catch (const cv::Exception& e) {
        throw ImageError(name + ": cannot decode the image (" + e.msg + ")");
    }
    if (raw.empty())
        throw ImageError(name + ": not a readable image (unknown format, or a truncated or corrupt file)");
    if (static_cast<int64_t>(raw.rows) * raw.cols > options.maxPixels)
        throw ImageError(name + ": the image has " + std::to_string(raw.cols) + "x" + std::to_string(raw.rows) +
                         " pixels, more than the limit of " + std::to_string(options.maxPixels));

    cv::Mat rgb;
    if (raw.channels() == 4) {
        // Composite over white so that transparent areas do not turn into hidden colours.
        cv::Mat bgra;
        to8Bit(raw).convertTo(bgra, CV_32F, 1.0 / 255.0);
        std::vector<cv::Mat> ch;
        cv::split(bgra, ch);
        for (int c = 0; c < 3; ++c)
            ch[c] = ch[c].mul(ch[3]) + (1.0 - ch[3]);
        cv::Mat bgr;
        cv::merge(std::vector<cv::Mat>{ch[0], ch[1], ch[2]}, bgr);
        bgr.convertTo(bgr, CV_8U, 255.0);
        cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    } else {
        cv::Mat decoded;
        try {
            // IMREAD_COLOR applies EXIF orientation and converts grey and CMYK.
            decoded = cv::imdecode(bytes, cv::IMREAD_COLOR | cv::IMREAD_ANYDEPTH);
        } catch (const cv::Exception& e) {
            throw ImageError(name + ": cannot decode the image (" + e.msg + ")");
        }
        if (decoded.empty())
            throw ImageError(name + ": not a readable image (truncated or corrupt)");
        cv::cvtColor(to8Bit(decoded), rgb, cv::COLOR_BGR2RGB);
    }
    return rgb;
}

cv::Mat loadImageRgb(const std::string& path, const ImageLoadOptions& options)
{
    std::vector<uint8_t> bytes;
    try {
        bytes = readFileBytes(path, options.maxFileBytes);
    } catch (const std::exception& e) {
        throw ImageError(e.what());
    }
    return decodeImageRgb(bytes, path, options);
}

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
