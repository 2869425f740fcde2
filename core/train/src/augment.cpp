#include "fec/train/augment.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <ATen/ATen.h>

namespace fec::train {

namespace {

double triangle(double x)
{
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

double cubic(double x)
{
    constexpr double a = -0.5;  // PIL's bicubic
    x = std::fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

// Per output pixel: the first source pixel and the normalised weights of the ones it reads
// (PIL's precompute_coeffs: the filter widens by the scale when shrinking, which antialiases).
struct Coefficients {
    std::vector<int> first, count;
    std::vector<float> weights;  // count.size() * stride
    int stride = 0;
};

Coefficients coefficients(int inSize, double in0, double in1, int outSize, bool bicubic)
{
    const double support = bicubic ? 2.0 : 1.0;
    const double scale = (in1 - in0) / outSize;
    const double filterScale = std::max(scale, 1.0);
    const double window = support * filterScale;
    Coefficients c;
    c.stride = static_cast<int>(std::ceil(window)) * 2 + 1;
    c.first.resize(outSize);
    c.count.resize(outSize);
    c.weights.assign(static_cast<size_t>(outSize) * c.stride, 0.0f);
    for (int xx = 0; xx < outSize; ++xx) {
        const double centre = in0 + (xx + 0.5) * scale;
        int xmin = std::max(static_cast<int>(centre - window + 0.5), 0);
        int xmax = std::min(static_cast<int>(centre + window + 0.5), inSize);
        if (xmax <= xmin) {  // degenerate box at the border: nearest pixel
            xmin = std::clamp(static_cast<int>(centre), 0, inSize - 1);
            xmax = xmin + 1;
        }
        const int n = std::min(xmax - xmin, c.stride);
        double total = 0.0;
        std::vector<double> w(static_cast<size_t>(n));
        for (int x = 0; x < n; ++x) {
            const double arg = (x + xmin - centre + 0.5) / filterScale;
            w[static_cast<size_t>(x)] = bicubic ? cubic(arg) : triangle(arg);
            total += w[static_cast<size_t>(x)];
        }
        if (total == 0.0) {
            std::fill(w.begin(), w.end(), 0.0);
            w[static_cast<size_t>(std::clamp(static_cast<int>(centre) - xmin, 0, n - 1))] = 1.0;
            total = 1.0;
        }
        c.first[xx] = xmin;
        c.count[xx] = n;
        for (int x = 0; x < n; ++x)
            c.weights[static_cast<size_t>(xx) * c.stride + x] = static_cast<float>(w[static_cast<size_t>(x)] / total);
    }
    return c;
}

template <typename T> float pixel(const T* p, float scale)
{
    return static_cast<float>(*p) * scale;
}

template <typename T>
at::Tensor resampleTyped(const at::Tensor& image, const Box& box, int outW, int outH, bool bicubic, float toUnit)
{
    const int h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1)),
              ch = static_cast<int>(image.size(2));
    const T* src = image.data_ptr<T>();
    const auto cx = coefficients(w, box.x0, box.x1, outW, bicubic);
    const auto cy = coefficients(h, box.y0, box.y1, outH, bicubic);
    int rowMin = h, rowMax = 0;
    for (int y = 0; y < outH; ++y) {
        rowMin = std::min(rowMin, cy.first[y]);
        rowMax = std::max(rowMax, cy.first[y] + cy.count[y]);
    }
    // Horizontal pass over the rows the vertical pass reads: [rows, outW, ch].
    const int rows = rowMax - rowMin;
    std::vector<float> tmp(static_cast<size_t>(rows) * outW * ch);
    for (int r = 0; r < rows; ++r) {
        const T* line = src + static_cast<size_t>(r + rowMin) * w * ch;
        float* dst = tmp.data() + static_cast<size_t>(r) * outW * ch;
        for (int x = 0; x < outW; ++x) {
            const float* wt = cx.weights.data() + static_cast<size_t>(x) * cx.stride;
            const T* p = line + static_cast<size_t>(cx.first[x]) * ch;
            for (int c = 0; c < ch; ++c) {
                float acc = 0.0f;
                for (int k = 0; k < cx.count[x]; ++k)
                    acc += wt[k] * pixel(p + static_cast<size_t>(k) * ch + c, toUnit);
                dst[static_cast<size_t>(x) * ch + c] = acc;
            }
        }
    }
    auto out = at::empty({outH, outW, 3}, at::kFloat);
    float* o = out.data_ptr<float>();
    for (int y = 0; y < outH; ++y) {
        const float* wt = cy.weights.data() + static_cast<size_t>(y) * cy.stride;
        const int first = cy.first[y] - rowMin;
        for (int x = 0; x < outW; ++x) {
            float acc[3] = {0.0f, 0.0f, 0.0f};
            for (int k = 0; k < cy.count[y]; ++k) {
                const float* p = tmp.data() + (static_cast<size_t>(first + k) * outW + x) * ch;
                for (int c = 0; c < ch; ++c)
                    acc[c] += wt[k] * p[c];
            }
            float* q = o + (static_cast<size_t>(y) * outW + x) * 3;
            for (int c = 0; c < 3; ++c)
                q[c] = std::clamp(acc[ch == 1 ? 0 : c], 0.0f, 1.0f);
        }
    }
    return out;
}

void eraseRandomBox(at::Tensor& chw, const AugmentOptions& o, Rng& rng)
{
    if (o.eraseProb <= 0.0 || rng.uniform() >= o.eraseProb)
        return;
    const int ch = static_cast<int>(chw.size(0)), h = static_cast<int>(chw.size(1)), w = static_cast<int>(chw.size(2));
    const double area = static_cast<double>(h) * w;
    const double logMin = std::log(o.eraseRatioMin), logMax = std::log(1.0 / o.eraseRatioMin);
    for (int attempt = 0; attempt < 10; ++attempt) {
        const double target = rng.uniform(o.eraseAreaMin, o.eraseAreaMax) * area;
        const double aspect = std::exp(rng.uniform(logMin, logMax));
        const int eh = static_cast<int>(std::lround(std::sqrt(target * aspect)));
        const int ew = static_cast<int>(std::lround(std::sqrt(target / aspect)));
        if (eh < 1 || ew < 1 || eh >= h || ew >= w)
            continue;
        const int top = static_cast<int>(rng.below(h - eh + 1)), left = static_cast<int>(rng.below(w - ew + 1));
        float* p = chw.data_ptr<float>();
        for (int c = 0; c < ch; ++c)
            for (int y = top; y < top + eh; ++y)
                for (int x = left; x < left + ew; ++x)
                    p[(static_cast<size_t>(c) * h + y) * w + x] = static_cast<float>(rng.normal());
        return;
    }
}

void checkImage(const at::Tensor& image)
{
    if (image.dim() != 3 || (image.size(2) != 1 && image.size(2) != 3) || image.size(0) < 1 || image.size(1) < 1)
        throw std::invalid_argument("expected an image [H, W, 1 or 3], got " + c10::str(image.sizes()));
    if (image.scalar_type() != at::kByte && image.scalar_type() != at::kFloat)
        throw std::invalid_argument("images must be uint8 or float32");
}

}  // namespace

Box randomResizedCropBox(int width, int height, const AugmentOptions& o, Rng& rng)
{
    const double area = static_cast<double>(width) * height;
    const double logMin = std::log(o.ratioMin), logMax = std::log(o.ratioMax);
    for (int attempt = 0; attempt < 10; ++attempt) {
        const double target = area * rng.uniform(o.scaleMin, o.scaleMax);
        const double aspect = std::exp(rng.uniform(logMin, logMax));
        const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
        const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            const int top = static_cast<int>(rng.below(height - h + 1));
            const int left = static_cast<int>(rng.below(width - w + 1));
            return {double(left), double(top), double(left + w), double(top + h)};
        }
    }
    const double inRatio = static_cast<double>(width) / height;
    int w = width, h = height;
    if (inRatio < o.ratioMin)
        h = static_cast<int>(std::lround(w / o.ratioMin));
    else if (inRatio > o.ratioMax)
        w = static_cast<int>(std::lround(h * o.ratioMax));
    const int top = (height - h) / 2, left = (width - w) / 2;
    return {double(left), double(top), double(left + w), double(top + h)};
}

at::Tensor resampleBox(const at::Tensor& image, const Box& box, int outW, int outH, bool bicubic)
{
    checkImage(image);
    if (outW < 1 || outH < 1)
        throw std::invalid_argument("output size must be positive");
    auto src = image.contiguous();
    if (src.scalar_type() == at::kByte)
        return resampleTyped<uint8_t>(src, box, outW, outH, bicubic, 1.0f / 255.0f);
    return resampleTyped<float>(src, box, outW, outH, bicubic, 1.0f);
}

at::Tensor normalizeToChw(const at::Tensor& hwc, bool flip)
{
    const auto h = hwc.size(0), w = hwc.size(1);
    auto src = hwc.contiguous();
    const float* s = src.data_ptr<float>();
    auto out = at::empty({3, h, w}, at::kFloat);
    float* o = out.data_ptr<float>();
    for (int c = 0; c < 3; ++c) {
        const float mean = kImageNetMean[c], inv = 1.0f / kImageNetStd[c];
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                const int64_t sx = flip ? w - 1 - x : x;
                o[(c * h + y) * w + x] = (s[(y * w + sx) * 3 + c] - mean) * inv;
            }
    }
    return out;
}

at::Tensor trainTransform(const at::Tensor& image, const AugmentOptions& o, uint64_t seed)
{
    checkImage(image);
    Rng rng(seed);
    const int h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1));
    const Box box = o.randomCrop ? randomResizedCropBox(w, h, o, rng) : Box{0, 0, double(w), double(h)};
    auto rgb = resampleBox(image, box, o.size, o.size, /*bicubic=*/false);
    const bool flip = o.hflip > 0.0 && rng.uniform() < o.hflip;
    auto chw = normalizeToChw(rgb, flip);
    eraseRandomBox(chw, o, rng);
    return chw;
}

EvalResize parseEvalResize(const std::string& text)
{
    if (text == "squash")
        return EvalResize::Squash;
    if (text == "crop")
        return EvalResize::Crop;
    throw std::invalid_argument("evaluation resize must be squash or crop (got '" + text + "')");
}

Box evalSourceBox(int w, int h, int size, EvalResize mode)
{
    if (mode == EvalResize::Squash)
        return {0, 0, double(w), double(h)};
    // Shorter side to floor(S / 0.9), centre crop S: the same pixels as resizing then cropping.
    const int shortSide = static_cast<int>(std::floor(size / 0.9));
    const double scale = static_cast<double>(std::min(w, h)) / shortSide;  // source pixels per resized pixel
    const int rw = w <= h ? shortSide : static_cast<int>(std::lround(static_cast<double>(w) / scale));
    const int rh = h < w ? shortSide : static_cast<int>(std::lround(static_cast<double>(h) / scale));
    const int top = static_cast<int>(std::lround((rh - size) / 2.0)),
              left = static_cast<int>(std::lround((rw - size) / 2.0));
    const double sx = static_cast<double>(w) / rw, sy = static_cast<double>(h) / rh;
    return {left * sx, top * sy, (left + size) * sx, (top + size) * sy};
}

at::Tensor evalTransform(const at::Tensor& image, int size, EvalResize mode)
{
    checkImage(image);
    const int h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1));
    const auto box = evalSourceBox(w, h, size, mode);
    return normalizeToChw(resampleBox(image, box, size, size, /*bicubic=*/mode == EvalResize::Crop));
}

at::Tensor smoothOneHot(const at::Tensor& labels, int64_t classes, double smoothing)
{
    const double off = smoothing / static_cast<double>(classes), on = 1.0 - smoothing + off;
    auto out = at::full({labels.size(0), classes}, off, at::TensorOptions().dtype(at::kFloat).device(labels.device()));
    out.scatter_(1, labels.view({-1, 1}), on);
    return out;
}

at::Tensor mixBatch(at::Tensor& images, const at::Tensor& labels, int64_t classes, const MixOptions& o, uint64_t seed,
                    bool* mixedOut)
{
    Rng rng(seed);
    double lam = 1.0;
    bool cutmix = false;
    const bool enabled = o.mixupAlpha > 0.0 || o.cutmixAlpha > 0.0;
    if (enabled && rng.uniform() < o.prob) {
        if (o.mixupAlpha > 0.0 && o.cutmixAlpha > 0.0) {
            cutmix = rng.uniform() < o.switchProb;
            lam = cutmix ? rng.beta(o.cutmixAlpha, o.cutmixAlpha) : rng.beta(o.mixupAlpha, o.mixupAlpha);
        } else if (o.mixupAlpha > 0.0) {
            lam = rng.beta(o.mixupAlpha, o.mixupAlpha);
        } else {
            cutmix = true;
            lam = rng.beta(o.cutmixAlpha, o.cutmixAlpha);
        }
    }
    bool mixed = false;
    if (lam != 1.0 && images.size(0) > 1) {
        auto flipped = images.flip(0);
        if (cutmix) {
            const auto h = images.size(2), w = images.size(3);
            const double ratio = std::sqrt(1.0 - lam);
            const auto cutH = static_cast<int64_t>(h * ratio), cutW = static_cast<int64_t>(w * ratio);
            const auto cy = rng.below(h), cx = rng.below(w);
            const auto y0 = std::clamp<int64_t>(cy - cutH / 2, 0, h), y1 = std::clamp<int64_t>(cy + cutH / 2, 0, h);
            const auto x0 = std::clamp<int64_t>(cx - cutW / 2, 0, w), x1 = std::clamp<int64_t>(cx + cutW / 2, 0, w);
            if (y1 > y0 && x1 > x0) {
                images.slice(2, y0, y1).slice(3, x0, x1).copy_(flipped.slice(2, y0, y1).slice(3, x0, x1));
                mixed = true;
            }
            lam = 1.0 - static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(h * w);
        } else {
            images.mul_(lam).add_(flipped, 1.0 - lam);
            mixed = true;
        }
    }
    if (mixedOut)
        *mixedOut = mixed;
    auto target = smoothOneHot(labels, classes, o.smoothing);
    if (!mixed)
        return target;
    return target.mul(lam).add_(target.flip(0), 1.0 - lam);
}

}  // namespace fec::train
