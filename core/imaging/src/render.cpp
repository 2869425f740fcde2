#include "fec/imaging/render.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/atomic_file.h"

namespace fec::imaging {

namespace {

// Okabe & Ito (2008) without black, then Paul Tol's "muted" and "light" qualitative schemes
// without their pale grey (reserved for missing data); the Tol colours are reordered so that
// consecutive indices are far apart (RGB distance >= 140).
const cv::Vec3b kFixedPalette[kFixedPaletteSize] = {
    {230, 159, 0},   {86, 180, 233}, {0, 158, 115},   {240, 228, 66},  {0, 114, 178},   {213, 94, 0},
    {204, 121, 167}, {51, 34, 136},  {204, 102, 119}, {68, 170, 153},  {136, 34, 85},   {221, 204, 119},
    {17, 119, 51},   {170, 68, 153}, {136, 204, 238}, {153, 153, 51},  {255, 170, 187}, {170, 170, 0},
    {238, 221, 136}, {68, 187, 153}, {238, 136, 102}, {119, 170, 221}, {187, 204, 51},  {153, 221, 255},
};

// Label maps index a colour table; pyramid levels have at most a few thousand labels.
constexpr int kMaxLabels = 1 << 20;

cv::Vec3b hsvToRgb(double h, double s, double v)
{
    const double c = v * s;
    const double hp = h * 6.0;
    const double x = c * (1.0 - std::abs(std::fmod(hp, 2.0) - 1.0));
    const double sectors[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
    const double* rgb = sectors[static_cast<int>(hp) % 6];
    const double m = v - c;
    auto byte = [m](double value) { return cv::saturate_cast<uchar>(std::lround((value + m) * 255.0)); };
    return {byte(rgb[0]), byte(rgb[1]), byte(rgb[2])};
}

cv::Mat toLabelMat(const at::Tensor& labels)
{
    if (!labels.defined() || labels.dim() != 2 || labels.numel() == 0)
        throw std::invalid_argument("a label map must be a non-empty 2-D tensor [h, w]");
    const auto t = labels.to(at::kCPU).to(at::kInt).contiguous();
    cv::Mat m(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_32S);
    std::memcpy(m.data, t.data_ptr<int32_t>(), static_cast<size_t>(t.numel()) * sizeof(int32_t));
    return m;
}

std::vector<cv::Vec3b> colourTable(const cv::Mat& labels, const std::vector<int>* colourOf)
{
    double maxValue = 0;
    cv::minMaxLoc(labels, nullptr, &maxValue);
    if (maxValue >= kMaxLabels)
        throw std::invalid_argument("label " + std::to_string(static_cast<int64_t>(maxValue)) +
                                    " is too large to colour (at most " + std::to_string(kMaxLabels - 1) + ")");
    std::vector<cv::Vec3b> table(static_cast<size_t>(std::max(0.0, maxValue)) + 1);
    for (size_t i = 0; i < table.size(); ++i) {
        if (!colourOf)
            table[i] = paletteColour(static_cast<int>(i));
        else if (i < colourOf->size())
            table[i] = paletteColour((*colourOf)[i]);
    }
    return table;
}

// Display-only smoothing; medianBlur needs 8- or 16-bit data, so labels are shifted by one to
// keep "no label" (negative) representable as 0.
cv::Mat medianLabels(const cv::Mat& labels, int kernel)
{
    const cv::Mat clamped = cv::max(labels, -1);
    double maxValue = 0;
    cv::minMaxLoc(clamped, nullptr, &maxValue);
    cv::Mat shifted, filtered, out;
    if (maxValue + 1 <= 255) {
        clamped.convertTo(shifted, CV_8U, 1, 1);
    } else if (maxValue + 1 <= 65535) {
        clamped.convertTo(shifted, CV_16U, 1, 1);
        kernel = std::min(kernel, 5);
    } else {
        return labels;
    }
    cv::medianBlur(shifted, filtered, kernel);
    filtered.convertTo(out, CV_32S, 1, -1);
    return out;
}

// Image pixel -> label-map index along one axis (-1 outside the model input). The valid pixels
// form one run [first, last).
struct Axis {
    std::vector<int> index;
    int first = 0, last = 0;
};

Axis mapAxis(int imageSize, double offset, double scale, int inputSize, int labelSize)
{
    Axis a;
    a.index.assign(imageSize, -1);
    a.first = imageSize;
    for (int x = 0; x < imageSize; ++x) {
        const double t = (x + 0.5 - offset) / scale;
        if (t < 0 || t >= inputSize)
            continue;
        a.index[x] = std::min(labelSize - 1, static_cast<int>(std::floor(t * labelSize / inputSize)));
        a.first = std::min(a.first, x);
        a.last = x + 1;
    }
    if (a.first >= a.last)
        a.first = a.last = 0;
    return a;
}

// A label map placed on the image: the image rectangle the model input covers and, per label-map
// row, that row stretched to the rectangle's width. Image rows are copies of these rows, so the
// per-pixel work is done row by row from these templates, without full-size intermediates
// (fresh 12 MP buffers cost more in page faults than the drawing itself).
struct Placement {
    cv::Rect roi;
    std::vector<int> rowOf;  // per roi row: label-map row
    cv::Mat rows;            // [labelH, roi.width] int32
};

Placement place(const cv::Mat& labels, const InputMapping& mapping, cv::Size imageSize)
{
    if (mapping.inputSize <= 0 || mapping.scaleX <= 0 || mapping.scaleY <= 0)
        throw std::invalid_argument("the input mapping is not set (input size 0)");
    if (imageSize.width != mapping.imageWidth || imageSize.height != mapping.imageHeight)
        throw std::invalid_argument("the image is " + std::to_string(imageSize.width) + "x" +
                                    std::to_string(imageSize.height) + " but the mapping was made for " +
                                    std::to_string(mapping.imageWidth) + "x" + std::to_string(mapping.imageHeight));
    const Axis xs = mapAxis(imageSize.width, mapping.offsetX, mapping.scaleX, mapping.inputSize, labels.cols);
    const Axis ys = mapAxis(imageSize.height, mapping.offsetY, mapping.scaleY, mapping.inputSize, labels.rows);
    Placement p;
    p.roi = cv::Rect(xs.first, ys.first, xs.last - xs.first, ys.last - ys.first);
    if (p.roi.empty())
        return p;
    p.rowOf.assign(ys.index.begin() + ys.first, ys.index.begin() + ys.last);
    p.rows.create(labels.rows, p.roi.width, CV_32S);
    for (int v = 0; v < labels.rows; ++v) {
        const int32_t* src = labels.ptr<int32_t>(v);
        int32_t* dst = p.rows.ptr<int32_t>(v);
        for (int x = 0; x < p.roi.width; ++x)
            dst[x] = src[xs.index[p.roi.x + x]];
    }
    return p;
}

// Outline = pixels whose label differs from the right or lower neighbour, dilated by a
// thickness x thickness square (anchored like cv::dilate). Both edge kinds are fixed per
// label-map row, so they are computed and dilated horizontally once per row template; an image
// row ORs the templates of the rows its vertical window covers.
class Outline {
public:
    Outline(const Placement& p, int thickness) : m_p(p), m_thickness(std::max(1, thickness))
    {
        const int w = p.roi.width;
        m_right = cv::Mat::zeros(p.rows.size(), CV_8U);
        if (w > 1) {
            cv::Mat edge = m_right.colRange(0, w - 1);
            cv::compare(p.rows.colRange(0, w - 1), p.rows.colRange(1, w), edge, cv::CMP_NE);
        }
        m_down = cv::Mat::zeros(p.rows.size(), CV_8U);
        m_last.assign(p.rowOf.size(), 0);
        for (size_t y = 0; y + 1 < p.rowOf.size(); ++y) {
            const int v = p.rowOf[y], next = p.rowOf[y + 1];
            if (v == next)
                continue;
            m_last[y] = 1;
            cv::Mat edge = m_down.row(v);
            cv::compare(p.rows.row(v), p.rows.row(next), edge, cv::CMP_NE);
        }
        if (m_thickness > 1) {
            const cv::Mat kernel = cv::Mat::ones(1, m_thickness, CV_8U);
            const cv::Point anchor(m_thickness / 2, 0);
            cv::dilate(m_right, m_right, kernel, anchor);
            cv::dilate(m_down, m_down, kernel, anchor);
        }
    }

    // The outline mask of ROI row y into `mask` (roi.width bytes).
    void row(int y, uchar* mask) const
    {
        const int w = m_p.roi.width;
        const int from = std::max(0, y - m_thickness / 2);
        const int to = std::min<int>(static_cast<int>(m_p.rowOf.size()), y - m_thickness / 2 + m_thickness);
        std::fill(mask, mask + w, uchar(0));
        int previous = -1;
        for (int yy = from; yy < to; ++yy) {
            const int v = m_p.rowOf[yy];
            if (v != previous) {
                orInto(mask, m_right.ptr<uchar>(v), w);
                previous = v;
            }
            if (m_last[yy])
                orInto(mask, m_down.ptr<uchar>(v), w);
        }
    }

private:
    static void orInto(uchar* dst, const uchar* src, int n)
    {
        for (int x = 0; x < n; ++x)
            dst[x] |= src[x];
    }

    const Placement& m_p;
    int m_thickness;
    cv::Mat m_right, m_down;      // [labelH, roi.width] 8U, already dilated horizontally
    std::vector<uint8_t> m_last;  // per roi row: the next row shows another label-map row
};

void paintRow(cv::Vec3b* row, const uchar* mask, int n, cv::Vec3b colour)
{
    for (int x = 0; x < n; ++x)
        if (mask[x])
            row[x] = colour;
}

// Scales the parts of `image` outside `roi` by `factor` into `out`.
void scaleOutside(const cv::Mat& image, cv::Mat& out, const cv::Rect& roi, double factor)
{
    const cv::Rect bands[4] = {
        {0, 0, image.cols, roi.y},
        {0, roi.y + roi.height, image.cols, image.rows - roi.y - roi.height},
        {0, roi.y, roi.x, roi.height},
        {roi.x + roi.width, roi.y, image.cols - roi.x - roi.width, roi.height},
    };
    for (const auto& band : bands) {
        if (band.empty())
            continue;
        cv::Mat target = out(band);
        image(band).convertTo(target, -1, factor);
    }
}

void requireRgb(const cv::Mat& image, const char* what)
{
    if (image.empty() || image.type() != CV_8UC3)
        throw std::invalid_argument(std::string(what) + " must be a non-empty 8-bit RGB image (CV_8UC3)");
}

std::string lowerExtension(const std::string& path)
{
    const auto slash = path.find_last_of("/\\");
    const auto dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
        return {};
    std::string ext = path.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

}  // namespace

cv::Vec3b paletteColour(int index)
{
    if (index < 0)
        return {0, 0, 0};
    if (index < kFixedPaletteSize)
        return kFixedPalette[index];
    // Golden-ratio hue steps keep consecutive indices ~138 degrees apart; saturation and value
    // cycle with co-prime periods so that indices with close hues still differ in lightness.
    const int i = index - kFixedPaletteSize;
    const double goldenRatioConjugate = 0.6180339887498949;
    const double hue = std::fmod(0.11 + i * goldenRatioConjugate, 1.0);
    const double saturation[3] = {0.85, 0.55, 0.7};
    const double value[2] = {0.95, 0.72};
    return hsvToRgb(hue, saturation[i % 3], value[i % 2]);
}

cv::Mat colourise(const at::Tensor& labels, const std::vector<int>* colourOf)
{
    const cv::Mat lab = toLabelMat(labels);
    const auto table = colourTable(lab, colourOf);
    cv::Mat out(lab.size(), CV_8UC3);
    for (int y = 0; y < lab.rows; ++y) {
        const int32_t* src = lab.ptr<int32_t>(y);
        auto* dst = out.ptr<cv::Vec3b>(y);
        for (int x = 0; x < lab.cols; ++x)
            dst[x] = src[x] < 0 ? cv::Vec3b(0, 0, 0) : table[src[x]];
    }
    return out;
}

void overlayInto(const cv::Mat& imageRgb, const at::Tensor& labels, const InputMapping& mapping,
                 const OverlayStyle& style, cv::Mat& out, const std::vector<int>* colourOf)
{
    if (out.data && out.data == imageRgb.data) {
        // Keep the source alive under its own header: `out` may be the very object passed as image.
        const cv::Mat source = imageRgb;
        out = cv::Mat();
        overlayInto(source, labels, mapping, style, out, colourOf);
        return;
    }
    requireRgb(imageRgb, "overlay: the image");
    cv::Mat lab = toLabelMat(labels);
    if (style.medianKernel > 1)
        lab = medianLabels(lab, style.medianKernel | 1);
    const Placement p = place(lab, mapping, imageRgb.size());
    out.create(imageRgb.size(), CV_8UC3);
    scaleOutside(imageRgb, out, p.roi, 0.5);
    if (p.roi.empty())
        return;
    const cv::Mat image = imageRgb(p.roi);
    cv::Mat target = out(p.roi);

    const bool fill = style.mode != OverlayStyle::Mode::Outline;
    const bool outline = style.mode != OverlayStyle::Mode::Fill;
    cv::Mat colourRows, unlabelled;
    bool anyUnlabelled = false;
    if (fill) {
        const auto table = colourTable(lab, colourOf);
        colourRows.create(p.rows.size(), CV_8UC3);
        unlabelled.create(p.rows.size(), CV_8U);
        for (int v = 0; v < p.rows.rows; ++v) {
            const int32_t* src = p.rows.ptr<int32_t>(v);
            auto* dst = colourRows.ptr<cv::Vec3b>(v);
            uchar* none = unlabelled.ptr<uchar>(v);
            for (int x = 0; x < p.rows.cols; ++x) {
                dst[x] = src[x] < 0 ? cv::Vec3b(0, 0, 0) : table[src[x]];
                none[x] = src[x] < 0 ? 255 : 0;
            }
        }
        anyUnlabelled = cv::countNonZero(unlabelled) > 0;
    }
    std::optional<Outline> edges;
    if (outline)
        edges.emplace(p, style.outlineThickness);
    const double alpha = std::clamp(style.opacity, 0.0, 1.0);
    cv::parallel_for_(cv::Range(0, p.roi.height), [&](const cv::Range& range) {
        std::vector<uchar> mask(outline ? p.roi.width : 0);
        for (int y = range.start; y < range.end; ++y) {
            const int v = p.rowOf[y];
            cv::Mat dst = target.row(y);
            if (fill) {
                cv::addWeighted(image.row(y), 1.0 - alpha, colourRows.row(v), alpha, 0.0, dst);
                if (anyUnlabelled)
                    image.row(y).copyTo(dst, unlabelled.row(v));
            } else {
                image.row(y).copyTo(dst);
            }
            if (outline) {
                edges->row(y, mask.data());
                paintRow(dst.ptr<cv::Vec3b>(), mask.data(), p.roi.width, style.outlineColour);
            }
        }
    });
}

cv::Mat overlay(const cv::Mat& imageRgb, const at::Tensor& labels, const InputMapping& mapping,
                const OverlayStyle& style, const std::vector<int>* colourOf)
{
    // A fresh 36 MB output (12 MP) costs ~100 ms of page faults on the machines measured. Keep
    // the last output per thread and draw into it again once every caller has released it
    // (reference count back to one: only this cache holds it); otherwise allocate a new one.
    thread_local cv::Mat recycled;
    cv::Mat out;
    if (recycled.u && recycled.u->refcount == 1 && recycled.data != imageRgb.data)
        out = recycled;
    overlayInto(imageRgb, labels, mapping, style, out, colourOf);
    recycled = out;
    return out;
}

void highlightInto(const cv::Mat& baseRgb, const std::vector<uint8_t>& blockMask, int64_t blockH, int64_t blockW,
                   const InputMapping& mapping, cv::Vec3b colour, cv::Mat& out)
{
    if (out.data && out.data == baseRgb.data) {
        const cv::Mat source = baseRgb;
        out = cv::Mat();
        highlightInto(source, blockMask, blockH, blockW, mapping, colour, out);
        return;
    }
    requireRgb(baseRgb, "highlight: the image");
    if (blockH <= 0 || blockW <= 0 || static_cast<int64_t>(blockMask.size()) != blockH * blockW)
        throw std::invalid_argument("highlight: the block mask must have blockH * blockW entries");
    cv::Mat selected(static_cast<int>(blockH), static_cast<int>(blockW), CV_32S);
    for (int64_t i = 0; i < blockH * blockW; ++i)
        selected.at<int32_t>(static_cast<int>(i / blockW), static_cast<int>(i % blockW)) = blockMask[i] ? 1 : 0;
    const Placement p = place(selected, mapping, baseRgb.size());

    out.create(baseRgb.size(), CV_8UC3);
    const double dim = 0.35;
    scaleOutside(baseRgb, out, p.roi, dim);
    if (p.roi.empty())
        return;
    const cv::Mat image = baseRgb(p.roi);
    cv::Mat target = out(p.roi);
    cv::Mat keep;
    cv::compare(p.rows, 0, keep, cv::CMP_NE);
    const int thickness = std::max(2, static_cast<int>(std::lround(std::min(baseRgb.cols, baseRgb.rows) / 300.0)));
    const Outline edges(p, thickness);
    cv::parallel_for_(cv::Range(0, p.roi.height), [&](const cv::Range& range) {
        std::vector<uchar> mask(p.roi.width);
        for (int y = range.start; y < range.end; ++y) {
            cv::Mat dst = target.row(y);
            image.row(y).convertTo(dst, -1, dim);
            image.row(y).copyTo(dst, keep.row(p.rowOf[y]));
            edges.row(y, mask.data());
            paintRow(dst.ptr<cv::Vec3b>(), mask.data(), p.roi.width, colour);
        }
    });
}

cv::Mat highlight(const cv::Mat& baseRgb, const std::vector<uint8_t>& blockMask, int64_t blockH, int64_t blockW,
                  const InputMapping& mapping, cv::Vec3b colour)
{
    cv::Mat out;
    highlightInto(baseRgb, blockMask, blockH, blockW, mapping, colour, out);
    return out;
}

void writeImageAtomic(const std::string& path, const cv::Mat& rgbOr16bit)
{
    if (rgbOr16bit.empty())
        throw std::runtime_error(path + ": nothing to write (empty image)");
    const std::string ext = lowerExtension(path);
    if (ext.empty())
        throw std::runtime_error(path + ": no file extension to choose the image format from");
    cv::Mat encodable;
    switch (rgbOr16bit.type()) {
    case CV_8UC3:
        cv::cvtColor(rgbOr16bit, encodable, cv::COLOR_RGB2BGR);
        break;
    case CV_8UC4:
        cv::cvtColor(rgbOr16bit, encodable, cv::COLOR_RGBA2BGRA);
        break;
    case CV_8UC1:
        encodable = rgbOr16bit;
        break;
    case CV_16UC1:
        if (ext != ".png" && ext != ".tif" && ext != ".tiff")
            throw std::runtime_error(path + ": 16-bit images can only be written as PNG or TIFF");
        encodable = rgbOr16bit;
        break;
    default:
        throw std::runtime_error(path + ": unsupported image type (expected 8-bit RGB, RGBA, grey or 16-bit grey)");
    }
    std::vector<uchar> bytes;
    try {
        if (!cv::imencode(ext, encodable, bytes))
            throw std::runtime_error(path + ": the image could not be encoded as " + ext);
    } catch (const cv::Exception& e) {
        throw std::runtime_error(path + ": cannot encode the image as " + ext + " (" + e.msg + ")");
    }
    writeFileAtomic(path, bytes.data(), bytes.size());
}

cv::Mat mapToImage(const at::Tensor& values, const InputMapping& mapping, float outside)
{
    if (!values.defined() || values.dim() != 2)
        throw std::invalid_argument("mapToImage: expected a 2-D map");
    const auto v = values.to(at::kCPU, at::kFloat).contiguous();
    const int64_t h = v.size(0), w = v.size(1);
    const int size = mapping.inputSize > 0 ? mapping.inputSize : static_cast<int>(std::max(h, w));
    cv::Mat out(mapping.imageHeight, mapping.imageWidth, CV_32F, cv::Scalar(outside));
    const float* src = v.data_ptr<float>();
    std::vector<int64_t> col(static_cast<size_t>(mapping.imageWidth), -1);
    for (int x = 0; x < mapping.imageWidth; ++x) {
        const double u = std::floor((x + 0.5 - mapping.offsetX) / mapping.scaleX);
        if (u >= 0 && u < size)
            col[static_cast<size_t>(x)] = static_cast<int64_t>(u) * w / size;
    }
    for (int y = 0; y < mapping.imageHeight; ++y) {
        const double r = std::floor((y + 0.5 - mapping.offsetY) / mapping.scaleY);
        if (r < 0 || r >= size)
            continue;
        const int64_t row = static_cast<int64_t>(r) * h / size;
        float* dst = out.ptr<float>(y);
        for (int x = 0; x < mapping.imageWidth; ++x)
            if (col[static_cast<size_t>(x)] >= 0)
                dst[x] = src[row * w + col[static_cast<size_t>(x)]];
    }
    return out;
}

cv::Vec3b divergingColour(double t)
{
    t = std::clamp(t, -1.0, 1.0);
    // RdBu: #2166ac (negative end), white, #b2182b (positive end).
    const double neg[3] = {33, 102, 172}, pos[3] = {178, 24, 43};
    const double* end = t < 0 ? neg : pos;
    const double a = std::abs(t);
    cv::Vec3b c;
    for (int k = 0; k < 3; ++k)
        c[k] = cv::saturate_cast<uint8_t>(255.0 + (end[k] - 255.0) * a);
    return c;
}

cv::Mat divergingOverlay(const cv::Mat& imageRgb, const at::Tensor& values, const InputMapping& mapping, double range,
                         double maxOpacity)
{
    requireRgb(imageRgb, "diverging overlay: the image");
    if (!(range > 0))
        throw std::invalid_argument("diverging overlay: the range must be positive");
    if (imageRgb.cols != mapping.imageWidth || imageRgb.rows != mapping.imageHeight)
        throw std::invalid_argument("diverging overlay: the image does not match the mapping");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const cv::Mat mapped = mapToImage(values, mapping, nan);
    cv::Mat out(imageRgb.size(), CV_8UC3);
    for (int y = 0; y < out.rows; ++y) {
        const auto* in = imageRgb.ptr<cv::Vec3b>(y);
        const auto* m = mapped.ptr<float>(y);
        auto* o = out.ptr<cv::Vec3b>(y);
        for (int x = 0; x < out.cols; ++x) {
            if (std::isnan(m[x])) {
                o[x] = in[x] / 2;
                continue;
            }
            const double t = std::clamp(m[x] / range, -1.0, 1.0);
            const cv::Vec3b c = divergingColour(t);
            const double a = std::abs(t) * maxOpacity;
            for (int k = 0; k < 3; ++k)
                o[x][k] = cv::saturate_cast<uint8_t>(in[x][k] * (1 - a) + c[k] * a);
        }
    }
    return out;
}

}  // namespace fec::imaging
