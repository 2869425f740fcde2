#include "fec/explain/faithfulness.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>

#include "fec/analysis.h"
#include "fec/evidence.h"

namespace fec::explain {
namespace {

constexpr double kNormEps = 1e-5;  // GroupNorm's eps in every FEC model

c10::Device deviceOf(FecModelImpl& model)
{
    return model.parameters().front().device();
}

// Softmax probability of `target` for a batch of inputs [K, C, S, S], in chunks.
std::vector<double> probabilities(FecModelImpl& model, const at::Tensor& inputs, int64_t target, int batch)
{
    c10::InferenceMode guard;
    const auto device = deviceOf(model);
    std::vector<double> out;
    out.reserve(static_cast<size_t>(inputs.size(0)));
    for (int64_t start = 0; start < inputs.size(0); start += batch) {
        const auto end = std::min<int64_t>(inputs.size(0), start + batch);
        const auto logits = model.forward(inputs.slice(0, start, end).to(device));
        const auto p = at::softmax(logits.to(at::kCPU, at::kDouble), 1).select(1, target).contiguous();
        const auto* v = p.data_ptr<double>();
        out.insert(out.end(), v, v + p.size(0));
    }
    return out;
}

// Average ranks (1-based), ties sharing their mean rank.
std::vector<double> ranks(const std::vector<double>& v)
{
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
        size_t j = i;
        while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]])
            ++j;
        for (size_t k = i; k <= j; ++k)
            r[idx[k]] = 0.5 * static_cast<double>(i + j) + 1.0;
        i = j + 1;
    }
    return r;
}

bool spearman(const std::vector<double>& a, const std::vector<double>& b, double& rho)
{
    if (a.size() < 3)
        return false;
    const auto ra = ranks(a), rb = ranks(b);
    const double n = static_cast<double>(a.size());
    const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n,
                 mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < ra.size(); ++i) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    if (saa <= 0 || sbb <= 0)
        return false;
    rho = sab / std::sqrt(saa * sbb);
    return true;
}

double quantile(std::vector<double> v, double q)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const double pos = q * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const auto hi = std::min(v.size() - 1, lo + 1);
    return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// Removes final segments cumulatively in `order` (indices into ablator.segments()), every step in
// one batched run; x = pixel fraction removed, y = probability of `target`.
double segmentDeletionAuc(SegmentAblator& ablator, const std::vector<int64_t>& segmentPixels, int64_t totalPixels,
                          const std::vector<size_t>& order, int64_t target)
{
    std::vector<double> x{0.0}, y;
    y.push_back(at::softmax(ablator.baseLogits().to(at::kDouble), 0)[target].item<double>());
    std::vector<std::vector<int32_t>> sets;
    std::vector<int32_t> removed;
    int64_t pixels = 0;
    for (auto i : order) {
        removed.push_back(ablator.segments()[i]);
        pixels += segmentPixels[i];
        sets.push_back(removed);
        x.push_back(static_cast<double>(pixels) / static_cast<double>(totalPixels));
    }
    if (!sets.empty()) {
        const auto p = at::softmax(ablator.removingEach(sets).to(at::kDouble), 1).select(1, target).contiguous();
        y.insert(y.end(), p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    }
    return trapezoidAuc(x, y);
}

std::vector<size_t> orderByDescending(const std::vector<double>& score)
{
    std::vector<size_t> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
    return order;
}

// Paints a per-segment value over the pixels of a compact label map [S, S].
at::Tensor paint(const at::Tensor& labels, const std::vector<double>& value)
{
    auto l = labels.to(at::kInt).contiguous();
    auto out = at::zeros(l.sizes(), at::kFloat);
    const auto* lp = l.data_ptr<int32_t>();
    auto* op = out.data_ptr<float>();
    for (int64_t i = 0; i < l.numel(); ++i)
        op[i] = lp[i] >= 0 ? static_cast<float>(value[static_cast<size_t>(lp[i])]) : 0.f;
    return out;
}

// The inputs of the steps strictly between the first and the last of a deletion (pixels set to
// `canvas`) or insertion (pixels revealed on `canvas`) curve: [counts - 2, C, H, W]. The two ends
// are the same for every order (the image, and the canvas), so callers compute them once.
at::Tensor interiorSteps(const at::Tensor& image, const std::vector<int64_t>& order, const std::vector<int64_t>& counts,
                         bool insertion, const at::Tensor& canvas)
{
    const int64_t h = image.size(1), w = image.size(2), n = h * w;
    TORCH_CHECK(static_cast<int64_t>(order.size()) == n, "faithfulness: order covers ", order.size(),
                " pixels, the image ", n);
    // rank[p] = position of pixel p in the order; step k touches the pixels with rank < counts[k].
    auto rank = at::empty({n}, at::kLong);
    auto* rp = rank.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i)
        rp[order[static_cast<size_t>(i)]] = i;
    const auto k = static_cast<int64_t>(counts.size()) - 2;
    if (k <= 0)
        return at::empty({0, image.size(0), h, w}, at::kFloat);
    auto thresholds = at::empty({k}, at::kLong);
    std::copy(counts.begin() + 1, counts.end() - 1, thresholds.data_ptr<int64_t>());
    const auto touched = rank.view({1, 1, h, w}).lt(thresholds.view({k, 1, 1, 1}));  // [K, 1, H, W]
    const auto full = image.unsqueeze(0), start = canvas.unsqueeze(0);
    return insertion ? at::where(touched, full, start) : at::where(touched, start, full);
}

// ROAD's 18 imputed images (MoRF 10..90 %, then LeRF 10..90 %), imputed in parallel: each
// imputation is one sparse solve, independent of the others.
std::vector<at::Tensor> roadInputs(const at::Tensor& image, const std::vector<int64_t>& order, double noise,
                                   uint64_t seed)
{
    const int64_t n = image.size(1) * image.size(2);
    std::vector<at::Tensor> edited(18);
    at::parallel_for(0, 18, 1, [&](int64_t begin, int64_t end) {
        for (int64_t job = begin; job < end; ++job) {
            const int morf = job < 9 ? 1 : 0, p = static_cast<int>(job % 9) + 1;
            const auto count = static_cast<int64_t>(std::llround(static_cast<double>(n) * p / 10.0));
            std::vector<uint8_t> removed(static_cast<size_t>(n), 0);
            for (int64_t i = 0; i < count; ++i)
                removed[static_cast<size_t>(order[static_cast<size_t>(morf ? i : n - 1 - i)])] = 1;
            edited[static_cast<size_t>(job)] =
                imputeRemoved(image, removed, noise, seed * 1000 + static_cast<uint64_t>(morf * 100 + p));
        }
    });
    return edited;
}

// When every channel of a [ch, n] image is an affine image a v + b of the first (within float
// rounding), the (a, b) of each channel, the first's being (1, 0); otherwise empty.
std::vector<std::pair<double, double>> affineOfFirstChannel(const double* v, int64_t ch, int64_t n)
{
    if (ch < 2 || n < 1)
        return {};
    const double* first = v;
    double mean0 = 0, var0 = 0;
    for (int64_t i = 0; i < n; ++i)
        mean0 += first[i];
    mean0 /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i)
        var0 += (first[i] - mean0) * (first[i] - mean0);
    std::vector<std::pair<double, double>> map{{1.0, 0.0}};
    for (int64_t c = 1; c < ch; ++c) {
        const double* other = v + c * n;
        double mean = 0, cov = 0, largest = 0;
        for (int64_t i = 0; i < n; ++i)
            mean += other[i];
        mean /= static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i)
            cov += (first[i] - mean0) * (other[i] - mean);
        const double a = var0 > 0 ? cov / var0 : 0.0, b = mean - a * mean0;
        for (int64_t i = 0; i < n; ++i)
            largest = std::max(largest, std::abs(other[i]));
        // Float inputs carry ~6e-8 relative rounding; 1e-5 of the largest value is well above it
        // and well below any real difference between colour channels.
        const double tolerance = 1e-5 * std::max(1.0, largest);
        for (int64_t i = 0; i < n; ++i)
            if (std::abs(other[i] - (a * first[i] + b)) > tolerance)
                return {};
        map.emplace_back(a, b);
    }
    return map;
}

// ROAD: probability of the class after imputing the most (MoRF) and least (LeRF) relevant
// 10%, 20%, ..., 90% of the pixels.
struct RoadCurves {
    std::vector<double> morf, lerf;  // 9 values each
    double morfMean = 0, lerfMean = 0;
    double score = 0;  // mean over percentiles of (LeRF - MoRF) / 2: higher is more faithful
};

// `prob`: the 18 probabilities of roadInputs' images, MoRF then LeRF.
RoadCurves roadFromProbabilities(const double* prob)
{
    RoadCurves r;
    r.morf.assign(prob, prob + 9);
    r.lerf.assign(prob + 9, prob + 18);
    r.morfMean = std::accumulate(r.morf.begin(), r.morf.end(), 0.0) / 9.0;
    r.lerfMean = std::accumulate(r.lerf.begin(), r.lerf.end(), 0.0) / 9.0;
    r.score = (r.lerfMean - r.morfMean) / 2.0;
    return r;
}

}  // namespace

std::string saliencyMethodName(SaliencyMethod method)
{
    switch (method) {
    case SaliencyMethod::Evidence:
        return "fec_evidence";
    case SaliencyMethod::Ablation:
        return "ablation_l-1";
    case SaliencyMethod::GradCam:
        return "gradcam";
    case SaliencyMethod::HiResCam:
        return "hirescam";
    case SaliencyMethod::GradInput:
        return "grad_x_input";
    case SaliencyMethod::Random:
        return "random";
    }
    return "?";
}

double trapezoidAuc(const std::vector<double>& x, const std::vector<double>& y)
{
    if (x.size() != y.size())
        throw std::invalid_argument("trapezoidAuc: x and y differ in length");
    double area = 0;
    for (size_t i = 1; i < x.size(); ++i)
        area += (x[i] - x[i - 1]) * 0.5 * (y[i] + y[i - 1]);
    return area;
}

std::vector<int64_t> stepCounts(int64_t pixels, int steps, int64_t pixelsPerStep)
{
    std::vector<int64_t> counts{0};
    if (pixelsPerStep > 0) {
        for (int64_t c = pixelsPerStep; c < pixels; c += pixelsPerStep)
            counts.push_back(c);
    } else {
        if (steps < 1)
            throw std::invalid_argument("faithfulness: steps must be >= 1");
        for (int k = 1; k < steps; ++k)
            counts.push_back(static_cast<int64_t>(std::llround(static_cast<double>(pixels) * k / steps)));
    }
    counts.push_back(pixels);
    return counts;
}

std::vector<int64_t> rankPixels(const at::Tensor& saliency, uint64_t seed)
{
    const auto s = saliency.to(at::kCPU, at::kDouble).contiguous().reshape({-1});
    const auto* v = s.data_ptr<double>();
    std::vector<int64_t> order(static_cast<size_t>(s.numel()));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
    return order;
}

at::Tensor gaussianBlur(const at::Tensor& image, int kernel, double sigma)
{
    const auto x = image.to(at::kFloat).unsqueeze(0);  // [1, C, H, W]
    const auto c = x.size(1);
    auto k = at::arange(kernel, at::kDouble).sub((kernel - 1) / 2.0);
    k = at::exp(k.pow(2).div(-2.0 * sigma * sigma));
    k = k.div(k.sum()).to(at::kFloat);
    const int64_t pad = kernel / 2;
    auto padded = at::reflection_pad2d(x, {pad, pad, pad, pad});
    auto h = at::conv2d(padded, k.view({1, 1, 1, kernel}).expand({c, 1, 1, kernel}).contiguous(), at::Tensor(),
                        at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, c);
    auto v = at::conv2d(h, k.view({1, 1, kernel, 1}).expand({c, 1, kernel, 1}).contiguous(), at::Tensor(),
                        at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, c);
    return v.squeeze(0);
}

at::Tensor imputeRemoved(const at::Tensor& image, const std::vector<uint8_t>& removed, double noiseStd, uint64_t seed)
{
    TORCH_CHECK(image.dim() == 3, "imputeRemoved: expected [C, H, W], got ", image.sizes());
    const auto img = image.to(at::kCPU, at::kDouble).contiguous();
    const int64_t ch = img.size(0), h = img.size(1), w = img.size(2), n = h * w;
    TORCH_CHECK(static_cast<int64_t>(removed.size()) == n, "imputeRemoved: mask size differs from the image");
    std::vector<int64_t> unknown, index(static_cast<size_t>(n), -1);
    for (int64_t i = 0; i < n; ++i)
        if (removed[static_cast<size_t>(i)]) {
            index[static_cast<size_t>(i)] = static_cast<int64_t>(unknown.size());
            unknown.push_back(i);
        }
    auto out = img.clone();
    const auto m = unknown.size();
    if (m == 0)
        return out.to(at::kFloat);
    // The compressed rows index unknowns with int32.
    TORCH_CHECK(m < static_cast<size_t>(std::numeric_limits<int32_t>::max() / 8),
                "imputeRemoved: too many removed pixels (", m, ")");
    const auto* src = img.data_ptr<double>();
    auto* dst = out.data_ptr<double>();

    // Row i: D_i x_i - sum_{unknown n} w_n x_n = sum_{known n} w_n v_n, with D_i the sum of the
    // in-bounds neighbour weights: symmetric, positive semi-definite.
    // Compressed rows: the links of row r are [start[r], start[r + 1]); unknowns are in raster
    // order, so the neighbours above and to the left (columns < r) come first, up to split[r].
    std::vector<int32_t> start(m + 1, 0), split(m, 0), col;
    std::vector<double> weight;
    col.reserve(m * 8);
    weight.reserve(m * 8);
    std::vector<double> diag(m, 0.0), rhs(m * static_cast<size_t>(ch), 0.0);
    static const int dy[8] = {-1, -1, -1, 0, 0, 1, 1, 1}, dx[8] = {-1, 0, 1, -1, 1, -1, 0, 1};
    for (size_t r = 0; r < m; ++r) {
        const int64_t y = unknown[r] / w, x = unknown[r] % w;
        for (int k = 0; k < 8; ++k) {
            if (k == 4)
                split[r] = static_cast<int32_t>(col.size());
            const int64_t ny = y + dy[k], nx = x + dx[k];
            if (ny < 0 || ny >= h || nx < 0 || nx >= w)
                continue;
            const double wt = (dy[k] == 0 || dx[k] == 0) ? 1.0 / 6.0 : 1.0 / 12.0;
            const int64_t p = ny * w + nx;
            diag[r] += wt;
            if (index[static_cast<size_t>(p)] >= 0) {
                col.push_back(static_cast<int32_t>(index[static_cast<size_t>(p)]));
                weight.push_back(wt);
            } else {
                for (int64_t c = 0; c < ch; ++c)
                    rhs[static_cast<size_t>(c) * m + r] += wt * src[c * n + p];
            }
        }
        start[r + 1] = static_cast<int32_t>(col.size());
    }
    auto apply = [&](const std::vector<double>& v, std::vector<double>& res) {
        for (size_t r = 0; r < m; ++r) {
            double s = diag[r] * v[r];
            for (int32_t e = start[r]; e < start[r + 1]; ++e)
                s -= weight[static_cast<size_t>(e)] * v[static_cast<size_t>(col[static_cast<size_t>(e)])];
            res[r] = s;
        }
    };
    // A grey image replicated to colour channels and then normalised per channel (Fashion-MNIST,
    // scans) has one system to solve: each channel is an affine image a v + b of the first, and
    // since every row's diagonal is the sum of its weights the rows reproduce constants, so the
    // solution for a v + b is a x + b. Measured on one thread, over the 180 imputations of one
    // Fashion-MNIST image in `fec eval --faithfulness`: 2.7 s of CPU channel by channel, 0.8 s now.
    const auto affine = affineOfFirstChannel(src, ch, n);
    const bool sameChannels = !affine.empty();
    // Preconditioned conjugate gradients with a symmetric SOR preconditioner (forward then
    // backward sweep over the unknowns). Plain CG needed up to ~90 ms per solve at 128x128 for
    // large removed blobs (measured: 90 % removed as whole rows); SSOR cuts the iterations several
    // times over for about three matrix products per iteration.
    constexpr double omega = 1.6;
    std::vector<double> scaledDiag(m);  // D / omega (1 where a pixel has no neighbour at all)
    for (size_t r = 0; r < m; ++r)
        scaledDiag[r] = (diag[r] > 0 ? diag[r] : 1.0) / omega;
    auto precondition = [&](const std::vector<double>& res, std::vector<double>& z) {
        // (D/w + L) u = (2 - w)/w r ; v = (D/w) u ; (D/w + L^T) z = v, with A = D + L + L^T and
        // A's off-diagonal entries -weight.
        const double scale = (2.0 - omega) / omega;
        for (size_t r = 0; r < m; ++r) {
            double sum = scale * res[r];
            for (int32_t e = start[r]; e < split[r]; ++e)
                sum += weight[static_cast<size_t>(e)] * z[static_cast<size_t>(col[static_cast<size_t>(e)])];
            z[r] = sum / scaledDiag[r];
        }
        for (size_t r = 0; r < m; ++r)
            z[r] *= scaledDiag[r];
        for (size_t r = m; r-- > 0;) {
            double sum = z[r];
            for (int32_t e = split[r]; e < start[r + 1]; ++e)
                sum += weight[static_cast<size_t>(e)] * z[static_cast<size_t>(col[static_cast<size_t>(e)])];
            z[r] = sum / scaledDiag[r];
        }
    };
    std::vector<double> xv(m), rv(m), zv(m), pv(m), ap(m);
    for (int64_t c = 0; c < (sameChannels ? 1 : ch); ++c) {
        std::fill(xv.begin(), xv.end(), 0.0);
        std::copy(rhs.begin() + static_cast<std::ptrdiff_t>(c * m),
                  rhs.begin() + static_cast<std::ptrdiff_t>((c + 1) * m), rv.begin());
        precondition(rv, zv);
        pv = zv;
        double rz = std::inner_product(rv.begin(), rv.end(), zv.begin(), 0.0);
        double rr = std::inner_product(rv.begin(), rv.end(), rv.begin(), 0.0);
        const double stop = std::max(1e-24, 1e-12 * rr);  // relative residual 1e-6: far below the noise
        for (size_t it = 0; it < 4 * m + 100 && rr > stop; ++it) {
            apply(pv, ap);
            const double pap = std::inner_product(pv.begin(), pv.end(), ap.begin(), 0.0);
            if (pap <= 0)
                break;
            const double alpha = rz / pap;
            for (size_t i = 0; i < m; ++i) {
                xv[i] += alpha * pv[i];
                rv[i] -= alpha * ap[i];
            }
            rr = std::inner_product(rv.begin(), rv.end(), rv.begin(), 0.0);
            precondition(rv, zv);
            const double next = std::inner_product(rv.begin(), rv.end(), zv.begin(), 0.0);
            const double beta = next / rz;
            rz = next;
            for (size_t i = 0; i < m; ++i)
                pv[i] = zv[i] + beta * pv[i];
        }
        for (int64_t into = c; into < (sameChannels ? ch : c + 1); ++into) {
            const double a = sameChannels ? affine[static_cast<size_t>(into)].first : 1.0,
                         b = sameChannels ? affine[static_cast<size_t>(into)].second : 0.0;
            for (size_t r = 0; r < m; ++r)
                dst[into * n + unknown[r]] = a * xv[r] + b;
        }
    }
    if (noiseStd > 0) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> noise(0.0, noiseStd);
        for (int64_t c = 0; c < ch; ++c)
            for (auto p : unknown)
                dst[c * n + p] += noise(rng);
    }
    return out.to(at::kFloat);
}

Curve deletionCurve(FecModelImpl& model, const at::Tensor& input, int64_t target, const std::vector<int64_t>& order,
                    bool insertion, const FaithfulnessOptions& options)
{
    const auto image = input.to(at::kCPU, at::kFloat).contiguous();
    const int64_t n = image.size(1) * image.size(2);
    TORCH_CHECK(static_cast<int64_t>(order.size()) == n, "deletionCurve: order covers ", order.size(),
                " pixels, the image ", n);
    const auto counts = stepCounts(n, options.steps, options.pixelsPerStep);
    const auto canvas = insertion ? gaussianBlur(image, 11, 5.0) : at::zeros_like(image);
    const auto first = insertion ? canvas : image, last = insertion ? image : canvas;
    const auto batch =
        at::cat({first.unsqueeze(0), interiorSteps(image, order, counts, insertion, canvas), last.unsqueeze(0)});
    Curve c;
    c.y = probabilities(model, batch, target, options.batch);
    for (auto v : counts)
        c.x.push_back(static_cast<double>(v) / static_cast<double>(n));
    c.auc = trapezoidAuc(c.x, c.y);
    return c;
}

namespace {

// Everything the metrics of one image need, computed once: its saliency maps and the ablation of
// its final segments (shared by the Spearman statistic and every segment-deletion curve).
struct ImageAnalysis {
    ImageSaliency saliency;
    at::Tensor labels;                     // [S, S] int32 compact last-level labels (-1: none)
    std::vector<int64_t> segmentPixels;    // per non-empty final segment
    std::unique_ptr<SegmentAblator> last;  // ablation of the final segments
    std::vector<double> lastEffects;       // their effects on the predicted class
};

ImageAnalysis analyse(FecModelImpl& model, const at::Tensor& input)
{
    ImageAnalysis result;
    auto& out = result.saliency;
    const auto device = deviceOf(model);
    const auto x = input.to(at::kFloat).unsqueeze(0).to(device);
    const int64_t s = input.size(1);
    out.maps.resize(kSaliencyMethodCount - 1);

    Trace trace;
    {
        at::NoGradGuard noGrad;
        TraceOptions traceOptions;
        traceOptions.blocks = false;
        trace = model.forwardTraced(x, traceOptions);
    }
    out.predicted = trace.logits[0].argmax().item<int64_t>();
    const auto target = out.predicted;
    const auto pyramid = buildPyramid(trace, 0);
    const int levels = pyramid.levelCount();

    const auto evidence = computeEvidence(model, trace.finalMap);
    const auto maps = evidenceMaps(evidence, pyramid, target);
    out.maps[static_cast<size_t>(SaliencyMethod::Evidence)] = maps.density.to(at::kFloat);

    // Ablation at level L-1, painted per pixel.
    {
        const int level = std::max(1, levels - 1);
        const auto& lv = pyramid.levels[static_cast<size_t>(level - 1)];
        SegmentAblator ablator(model, x, level, lv.nonEmpty);
        const auto effects = ablator.singleEffects().select(1, target).to(at::kDouble).contiguous();
        std::vector<double> value(effects.data_ptr<double>(), effects.data_ptr<double>() + effects.numel());
        out.maps[static_cast<size_t>(SaliencyMethod::Ablation)] = paint(pyramid.pixelLabels(level), value);
    }

    // Grad-CAM and HiResCAM: the head depends on the final map alone, so gradients with respect to
    // it come from the head applied to a leaf copy of Trace::finalMap (exact, no model change).
    {
        at::AutoGradMode grad(true);
        const auto a = trace.finalMap.to(at::kCPU, at::kDouble).clone().requires_grad_(true);  // [1, D, h, w]
        const auto normW = model.normWeight().detach().to(at::kCPU, at::kDouble);
        const auto normB = model.normBias().detach().to(at::kCPU, at::kDouble);
        const auto headW = model.headWeight().detach().to(at::kCPU, at::kDouble);
        const auto headB = model.headBias().detach().to(at::kCPU, at::kDouble);
        const auto y = at::group_norm(a, 1, normW, normB, kNormEps);
        const auto yLeaf = y.detach().clone().requires_grad_(true);
        auto logitOf = [&](const at::Tensor& t) {
            return at::matmul(headW[target], t.mean({2, 3})[0]).add(headB[target]);
        };
        const auto gA = torch::autograd::grad({logitOf(y)}, {a})[0];
        const auto weights = gA.mean({2, 3}, true);  // [1, D, 1, 1]
        auto cam = at::relu(a.detach().mul(weights).sum(1, true));
        out.maps[static_cast<size_t>(SaliencyMethod::GradCam)] =
            at::upsample_bilinear2d(cam, {s, s}, false)[0][0].to(at::kFloat);
        const auto gY = torch::autograd::grad({logitOf(yLeaf)}, {yLeaf})[0];
        const auto hires = yLeaf.detach().mul(gY).sum(1, true);  // [1, 1, h, w]
        const auto flat = hires.reshape({-1});
        const auto segment = at::tensor(maps.segment, at::kDouble);
        out.hiresMaxDiff = flat.sub(segment).abs().max().item<double>();
        out.maps[static_cast<size_t>(SaliencyMethod::HiResCam)] =
            at::upsample_bilinear2d(hires, {s, s}, false)[0][0].to(at::kFloat);
    }

    // Gradient x input through the whole network (the ATen path records gradients).
    {
        at::AutoGradMode grad(true);
        const auto leaf = x.detach().clone().requires_grad_(true);
        const auto logits = model.forward(leaf);
        const auto g = torch::autograd::grad({logits[0][target]}, {leaf})[0];
        out.maps[static_cast<size_t>(SaliencyMethod::GradInput)] =
            g.mul(leaf.detach()).sum(1)[0].to(at::kCPU, at::kFloat);
    }

    // Direct contribution versus causal effect of each non-empty final segment.
    {
        const auto& lv = pyramid.levels[static_cast<size_t>(levels - 1)];
        result.last = std::make_unique<SegmentAblator>(model, x, levels, lv.nonEmpty);
        const auto effects = result.last->singleEffects().select(1, target).to(at::kDouble).contiguous();
        result.lastEffects.assign(effects.data_ptr<double>(), effects.data_ptr<double>() + effects.numel());
        std::vector<double> contribution;
        for (size_t i = 0; i < lv.nonEmpty.size(); ++i)
            contribution.push_back(maps.segment[static_cast<size_t>(lv.nonEmpty[i])]);
        out.spearmanDefined = spearman(contribution, result.lastEffects, out.spearman);
        result.labels = pyramid.pixelLabels(levels).to(at::kInt).contiguous();
        result.segmentPixels.assign(lv.nonEmpty.size(), 0);
        const auto* lp = result.labels.data_ptr<int32_t>();
        for (int64_t p = 0; p < result.labels.numel(); ++p)
            if (lp[p] >= 0)
                ++result.segmentPixels[static_cast<size_t>(lp[p])];
    }
    return result;
}

}  // namespace

ImageSaliency saliencyMaps(FecModelImpl& model, const at::Tensor& input)
{
    return analyse(model, input).saliency;
}

MetricStats statsOf(const std::vector<double>& values)
{
    MetricStats s;
    if (values.empty())
        return s;
    const double n = static_cast<double>(values.size());
    s.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
    if (values.size() > 1) {
        double ss = 0;
        for (auto v : values)
            ss += (v - s.mean) * (v - s.mean);
        s.sem = std::sqrt(ss / (n - 1.0) / n);
    }
    return s;
}

namespace {

enum Metric { Deletion, Insertion, RoadMorf, RoadLerf, RoadScore, SegmentDeletion, kMetrics };

// Every number one image adds to the report.
struct ImageScores {
    std::vector<double> metrics;  // [method * kMetrics + metric]
    double byAblation = 0;        // segment deletion in the order of the segments' own effects
    bool spearmanDefined = false;
    double spearman = 0, hiresMaxDiff = 0;
    bool correct = false;
};

// Scores one normalised image [C, S, S]; false when `cancel` was set before it finished.
bool scoreImage(FecModelImpl& model, const at::Tensor& input, int64_t label, uint64_t imageSeed,
                const FaithfulnessOptions& options, const std::atomic<bool>* cancel, ImageScores& result)
{
    auto analysis = analyse(model, input);
    const auto& sal = analysis.saliency;
    const auto target = sal.predicted;
    result.correct = target == label;
    result.hiresMaxDiff = sal.hiresMaxDiff;
    result.spearmanDefined = sal.spearmanDefined;
    result.spearman = sal.spearman;

    // Final segments for segment deletion (feature-space removal at the last level).
    auto& ablator = *analysis.last;
    const auto& segPixels = analysis.segmentPixels;
    const auto nSeg = segPixels.size();
    const int64_t pixels = analysis.labels.numel();
    const auto* lp = analysis.labels.data_ptr<int32_t>();
    result.byAblation = segmentDeletionAuc(ablator, segPixels, pixels, orderByDescending(analysis.lastEffects), target);

    // The ends of the deletion and insertion curves are the same for every order: the image,
    // all pixels deleted (zeros) and the blurred canvas. One forward for the three.
    const auto counts = stepCounts(pixels, options.steps, options.pixelsPerStep);
    std::vector<double> x;
    for (auto v : counts)
        x.push_back(static_cast<double>(v) / static_cast<double>(pixels));
    const auto zeros = at::zeros_like(input), blurred = gaussianBlur(input, 11, 5.0);
    const auto ends = probabilities(model, at::stack({input, zeros, blurred}), target, options.batch);
    const double pImage = ends[0], pZeros = ends[1], pBlurred = ends[2];

    auto evaluate = [&](const std::vector<int64_t>& order, const std::vector<double>& segScore, uint64_t seed) {
        std::vector<double> m(kMetrics, 0.0);
        // Every edited input of this order in one batched run: deletion and insertion interiors,
        // then the 18 ROAD images.
        std::vector<at::Tensor> parts{interiorSteps(input, order, counts, false, zeros),
                                      interiorSteps(input, order, counts, true, blurred)};
        if (options.road)
            parts.push_back(at::stack(roadInputs(input, order, options.roadNoise, seed)));
        const auto prob = probabilities(model, at::cat(parts), target, options.batch);
        const auto inner = static_cast<std::ptrdiff_t>(counts.size()) - 2;
        std::vector<double> deletion{pImage}, insertion{pBlurred};
        deletion.insert(deletion.end(), prob.begin(), prob.begin() + inner);
        deletion.push_back(pZeros);
        insertion.insert(insertion.end(), prob.begin() + inner, prob.begin() + 2 * inner);
        insertion.push_back(pImage);
        m[Deletion] = trapezoidAuc(x, deletion);
        m[Insertion] = trapezoidAuc(x, insertion);
        if (options.road) {
            const auto road = roadFromProbabilities(prob.data() + 2 * inner);
            m[RoadMorf] = road.morfMean;
            m[RoadLerf] = road.lerfMean;
            m[RoadScore] = road.score;
        }
        m[SegmentDeletion] = segmentDeletionAuc(ablator, segPixels, pixels, orderByDescending(segScore), target);
        return m;
    };
    result.metrics.assign(static_cast<size_t>(kSaliencyMethodCount * kMetrics), 0.0);
    for (int method = 0; method < kSaliencyMethodCount; ++method) {
        if (cancel && cancel->load())
            return false;
        std::vector<double> m(kMetrics, 0.0);
        if (method == static_cast<int>(SaliencyMethod::Random)) {
            const int seeds = std::max(1, options.randomSeeds);
            for (int sd = 0; sd < seeds; ++sd) {
                std::vector<int64_t> order(static_cast<size_t>(pixels));
                std::iota(order.begin(), order.end(), 0);
                std::mt19937_64 rng(imageSeed * 31 + static_cast<uint64_t>(sd) + 7);
                std::shuffle(order.begin(), order.end(), rng);
                std::vector<double> score(nSeg);
                std::uniform_real_distribution<double> uniform(0.0, 1.0);
                for (auto& v : score)
                    v = uniform(rng);
                const auto one = evaluate(order, score, imageSeed + 17 * static_cast<uint64_t>(sd));
                for (int k = 0; k < kMetrics; ++k)
                    m[static_cast<size_t>(k)] += one[static_cast<size_t>(k)] / seeds;
            }
        } else {
            const auto& map = sal.maps[static_cast<size_t>(method)];
            const auto order = rankPixels(map, imageSeed);
            // Segment score from the map itself: the sum of its values over the segment.
            std::vector<double> score(nSeg, 0.0);
            const auto mp = map.to(at::kDouble).contiguous();
            const auto* v = mp.data_ptr<double>();
            for (int64_t p = 0; p < pixels; ++p)
                if (lp[p] >= 0)
                    score[static_cast<size_t>(lp[p])] += v[p];
            m = evaluate(order, score, imageSeed);
        }
        std::copy(m.begin(), m.end(), result.metrics.begin() + method * kMetrics);
    }
    return true;
}

// Sets LibTorch's intra-op threads for its lifetime. Threads started meanwhile (the image
// workers) take the new count when they first run an operator.
class IntraOpThreads {
public:
    explicit IntraOpThreads(int threads) : m_previous(at::get_num_threads()) { at::set_num_threads(threads); }
    ~IntraOpThreads() { at::set_num_threads(m_previous); }
    IntraOpThreads(const IntraOpThreads&) = delete;
    IntraOpThreads& operator=(const IntraOpThreads&) = delete;

private:
    int m_previous;
};

}  // namespace

FaithfulnessReport faithfulnessScores(FecModelImpl& model, const train::Dataset& data, int size,
                                      train::EvalResize resize, const FaithfulnessOptions& options,
                                      const std::function<void(int64_t, int64_t)>& progress,
                                      const std::atomic<bool>* cancel)
{
    model.eval();
    if (model.config().numClasses <= 0)
        throw std::invalid_argument("faithfulness: the model has no classifier");
    FaithfulnessReport r;
    r.size = size;
    r.road = options.road;
    r.steps =
        options.pixelsPerStep > 0 ? "pixels:" + std::to_string(options.pixelsPerStep) : std::to_string(options.steps);
    const auto total = data.size();

    // Images are scored by several threads at once, sharing the intra-op threads. Measured on 2
    // cores: two intra-op threads sped one image up only 1.46 times (the per-image analysis, small
    // batches and the sequential solver steps run on one core), two images at once, one thread
    // each, 1.95 times. Each worker holds its own batch of edited inputs and activations (about
    // 0.4 GB at 128), so at most kMaxWorkers run unless asked for more. Each image's numbers
    // depend only on its index and the intra-op threads it ran with.
    constexpr int kMaxWorkers = 4;
    const int threads = std::max(1, at::get_num_threads());
    const auto workers = static_cast<int>(std::clamp<int64_t>(
        options.workers > 0 ? options.workers : std::min(threads, kMaxWorkers), 1, std::max<int64_t>(1, total)));
    const int threadsPerWorker = std::max(1, threads / workers);
    std::vector<ImageScores> scores(static_cast<size_t>(total));
    std::vector<uint8_t> scored(static_cast<size_t>(total), 0);
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;  // guards done, failure and the progress callback
    int64_t done = 0;
    std::exception_ptr failure;
    auto stopped = [&] { return failed.load() || (cancel && cancel->load()); };
    auto work = [&] {
        while (!stopped()) {
            const auto i = next.fetch_add(1);
            if (i >= total)
                break;
            try {
                const auto sample = data.get(i);
                const auto input = train::evalTransform(sample.image, size, resize).to(at::kFloat).contiguous();
                const uint64_t imageSeed = options.seed * 1000003ULL + static_cast<uint64_t>(i);
                if (!scoreImage(model, input, sample.label, imageSeed, options, cancel, scores[static_cast<size_t>(i)]))
                    break;
                scored[static_cast<size_t>(i)] = 1;
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex);
                if (!failure)
                    failure = std::current_exception();
                failed = true;
                break;
            }
            std::lock_guard<std::mutex> lock(mutex);
            ++done;
            if (progress)
                progress(done, total);
        }
    };
    if (workers == 1) {
        work();
    } else {
        IntraOpThreads shared(threadsPerWorker);
        std::vector<std::thread> pool;
        for (int w = 0; w < workers; ++w)
            pool.emplace_back(work);
        for (auto& t : pool)
            t.join();
    }
    if (failure)
        std::rethrow_exception(failure);

    // Aggregate in image order.
    std::vector<std::vector<double>> values(static_cast<size_t>(kSaliencyMethodCount * kMetrics));
    std::vector<double> byAblation, rhos;
    int64_t correct = 0;
    for (int64_t i = 0; i < total; ++i) {
        if (!scored[static_cast<size_t>(i)])
            continue;
        const auto& s = scores[static_cast<size_t>(i)];
        for (size_t k = 0; k < values.size(); ++k)
            values[k].push_back(s.metrics[k]);
        byAblation.push_back(s.byAblation);
        if (s.spearmanDefined)
            rhos.push_back(s.spearman);
        r.hiresMaxDiff = std::max(r.hiresMaxDiff, s.hiresMaxDiff);
        correct += s.correct;
        ++r.images;
    }
    auto at_ = [&](int method, int metric) -> const std::vector<double>& {
        return values[static_cast<size_t>(method * kMetrics + metric)];
    };
    for (int method = 0; method < kSaliencyMethodCount; ++method) {
        MethodScores s;
        s.name = saliencyMethodName(static_cast<SaliencyMethod>(method));
        s.deletion = statsOf(at_(method, Deletion));
        s.insertion = statsOf(at_(method, Insertion));
        s.roadMorf = statsOf(at_(method, RoadMorf));
        s.roadLerf = statsOf(at_(method, RoadLerf));
        s.roadScore = statsOf(at_(method, RoadScore));
        s.segmentDeletion = statsOf(at_(method, SegmentDeletion));
        r.methods.push_back(s);
    }
    r.segmentDeletionByAblation = statsOf(byAblation);
    r.spearmanImages = static_cast<int64_t>(rhos.size());
    if (!rhos.empty()) {
        r.spearmanMean = std::accumulate(rhos.begin(), rhos.end(), 0.0) / static_cast<double>(rhos.size());
        r.spearmanMedian = quantile(rhos, 0.5);
        r.spearmanQ1 = quantile(rhos, 0.25);
        r.spearmanQ3 = quantile(rhos, 0.75);
    }
    r.top1 = r.images > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(r.images) : 0.0;
    return r;
}

}  // namespace fec::explain
