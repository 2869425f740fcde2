#include "fec/model.h"

#include <stdexcept>
#include <tuple>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "cluster_kernels.h"

namespace fec {

namespace {

constexpr double kNormEps = 1e-5;
constexpr double kCosEps = 1e-12;
// Cluster blocks on at least this many positions per region take the grouped-convolution
// products on the CPU (measured: 42 vs 255 us at 784 positions, 36 vs 17 us at 196).
constexpr int64_t kGroupedDotsMinPositions = 400;

// A plain container module, so that parameters get their PyTorch key paths.
std::shared_ptr<torch::nn::Module> child(torch::nn::Module& parent, const std::string& name)
{
    return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

// Registers `weight` (and `bias`) on a new child module `name`, like nn.Conv2d / nn.Linear.
std::pair<at::Tensor, at::Tensor> affine(torch::nn::Module& parent, const std::string& name,
                                         at::IntArrayRef weightShape, int64_t biasSize)
{
    auto module = child(parent, name);
    auto w = module->register_parameter("weight", at::empty(weightShape));
    auto b = module->register_parameter("bias", at::zeros({biasSize}));
    return {w, b};
}

std::pair<at::Tensor, at::Tensor> groupNorm(torch::nn::Module& parent, const std::string& name, int64_t channels)
{
    auto module = child(parent, name);
    auto w = module->register_parameter("weight", at::ones({channels}));
    auto b = module->register_parameter("bias", at::zeros({channels}));
    return {w, b};
}

// [B, C, H, W] (any memory format) -> channels-last memory.
at::Tensor channelsLast(const at::Tensor& x)
{
    return x.contiguous(at::MemoryFormat::ChannelsLast);
}

// 1x1 convolution (or a Linear weight [out, in] applied to every position). Activations are
// kept in channels-last memory: oneDNN then runs the 1x1 convolutions without reordering, about
// twice as fast as NCHW here, and [B, H, W, C] doubles as a [B, N, C] token matrix for free.
at::Tensor pointwise(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b)
{
    const auto weight = w.dim() == 2 ? w.view({w.size(0), w.size(1), 1, 1}) : w;
    if (detail::useClusterKernels(x))  // oneDNN always: conv2d picks THNN for small single images
        return at::mkldnn_convolution(channelsLast(x), weight, b, {0, 0}, {1, 1}, {1, 1}, 1);
    return at::conv2d(x, weight, b);
}

// The pools' 3x3 stride-2 skip convolution. For inference on the CPU, oneDNN directly with the
// weights in channels-last order (conv2d's heuristics send small single images to THNN).
at::Tensor skipConvolution(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b)
{
    if (detail::useClusterKernels(x))
        return at::mkldnn_convolution(channelsLast(x), w.contiguous(at::MemoryFormat::ChannelsLast), b, {1, 1}, {2, 2},
                                      {1, 1}, 1);
    return at::conv2d(x, w, b, /*stride=*/2, /*padding=*/1);
}

// Channels-last [B, C, H, W] -> its [B, H, W, C] token view (no copy).
at::Tensor tokens(const at::Tensor& x)
{
    return channelsLast(x).permute({0, 2, 3, 1});
}

// [B, H, W, C] tokens -> the [B, C, H, W] tensor with channels-last memory (no copy).
at::Tensor fromTokens(const at::Tensor& t)
{
    return t.permute({0, 3, 1, 2});
}

// Rows of [..., d] scaled to unit length, like torch.nn.functional.normalize(eps=1e-12).
at::Tensor normalizeLast(const at::Tensor& x)
{
    return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(kCosEps);
}

// 1 / max(||row||, eps) of [G, n, d] rows: [G, n, 1]. Dividing after the product instead of
// normalising every position first gives the same cosines up to rounding and never reorders
// two centres (division by a positive number is monotone).
at::Tensor inverseNorms(const at::Tensor& x)
{
    if (at::GradMode::is_enabled())  // in-place ops would overwrite what backward needs
        return (x * x).sum(-1).sqrt().clamp_min(kCosEps).reciprocal().unsqueeze(-1);
    return (x * x).sum(-1).sqrt_().clamp_min_(kCosEps).reciprocal_().unsqueeze(-1);
}

// Centres of region tokens [G, h, w, C]: average pools to [G, oh * ow, C] (row-major on the
// grid). Equal kxk windows use avg_pool2d (the same windows adaptive pooling takes, and much
// faster); uneven sizes use adaptive pooling's overlapping windows.
at::Tensor poolCentres(const at::Tensor& regionTokens, int64_t oh, int64_t ow)
{
    const auto g = regionTokens.size(0), h = regionTokens.size(1), w = regionTokens.size(2), c = regionTokens.size(3);
    auto image = fromTokens(regionTokens);
    at::Tensor pooled;
    if (h % oh == 0 && w % ow == 0 && h / oh == w / ow) {
        const auto k = h / oh;
        pooled = at::avg_pool2d(image, {k, k}, {k, k});
    } else {
        pooled = at::adaptive_avg_pool2d(image, {oh, ow});
    }
    return pooled.permute({0, 2, 3, 1}).reshape({g, oh * ow, c});
}

// [B, H, W, C] -> [B * fw * fh, H / fw, W / fh, C], regions ordered (b, f1, f2).
at::Tensor splitRegions(const at::Tensor& t, int fw, int fh)
{
    if (fw == 1 && fh == 1)
        return t;
    const auto b = t.size(0), h = t.size(1) / fw, w = t.size(2) / fh, c = t.size(3);
    return t.reshape({b, fw, h, fh, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b * fw * fh, h, w, c});
}

// Inverse of splitRegions for [B * fw * fh, h, w, C] tokens.
at::Tensor mergeRegions(const at::Tensor& t, int fw, int fh)
{
    if (fw == 1 && fh == 1)
        return t;
    const auto h = t.size(1), w = t.size(2), c = t.size(3), b = t.size(0) / (fw * fh);
    return t.reshape({b, fw, fh, h, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b, fw * h, fh * w, c});
}

// For every region-local index (region r, local position p on an h x w grid) its index on the
// full (fw*h) x (fh*w) grid: [fw*fh, h*w] int64.
at::Tensor regionToGlobal(int fw, int fh, int64_t h, int64_t w)
{
    auto rows = at::arange(h, at::kLong).view({1, 1, h, 1});
    auto cols = at::arange(w, at::kLong).view({1, 1, 1, w});
    auto f1 = at::arange(fw, at::kLong).view({fw, 1, 1, 1});
    auto f2 = at::arange(fh, at::kLong).view({1, fh, 1, 1});
    auto global = (f1 * h + rows) * (fh * w) + (f2 * w + cols);
    return global.reshape({fw * fh, h * w});
}

// [B * R, n] per-region values -> [B, H * W] on the full grid (row-major).
at::Tensor regionValuesToGrid(const at::Tensor& v, int fw, int fh, int64_t h, int64_t w)
{
    const auto b = v.size(0) / (fw * fh);
    return mergeRegions(v.reshape({b * fw * fh, h, w, 1}), fw, fh).reshape({b, fw * h * fh * w});
}

// Best minus second-best value along the last axis of [G, n, O]: [G, n].
at::Tensor topTwoMargin(const at::Tensor& sim)
{
    if (sim.size(2) < 2)
        return at::full({sim.size(0), sim.size(1)}, std::numeric_limits<float>::infinity(), sim.options());
    auto top = std::get<0>(sim.topk(2, 2));
    return top.select(2, 0) - top.select(2, 1);
}

// (Vc + sum of the V rows assigned to each centre) / (1 + count): [G, O, d].
// `v` [G, n, d] may be a strided view (one head's channels); index_add over flattened
// (group, centre) rows is 5x faster here than scatter_add on such views.
// `rowOffsets` [G, 1] = group * O, when the caller already has it.
at::Tensor representatives(const at::Tensor& vCentres, const at::Tensor& v, const at::Tensor& assign,
                           at::Tensor rowOffsets = {})
{
    const auto g = v.size(0), n = v.size(1), d = v.size(2), o = vCentres.size(1);
    if (!rowOffsets.defined())
        rowOffsets = (at::arange(g, assign.options()) * o).unsqueeze(1);
    auto rows = (assign + rowOffsets).reshape({g * n});
    auto sum = at::zeros({g * o, d}, v.options());
    sum.index_add_(0, rows, v.reshape({g * n, d}));
    auto count = at::bincount(rows, {}, g * o).to(v.scalar_type()).view({g, o, 1});
    return (sum.view({g, o, d}) + vCentres) / (count + 1.0);
}

// Training helpers. They work on [B, H, W, C] token tensors seen as [B*H*W, C] rows, with
// matrix products that add the bias themselves and the norms' affines and the layer scales
// folded into the neighbouring weights (small tensors): the same function with fewer passes
// over the activations, which is most of a training step's cost besides the products.

// Layer norm over (H, W, C) of tokens without affine: GroupNorm(1, C) before its affine.
at::Tensor normalizeTokens(const at::Tensor& t)
{
    return at::layer_norm(t, {t.size(1), t.size(2), t.size(3)}, {}, {}, kNormEps);
}

// A 1x1 convolution / Linear weight as a [out, in] matrix.
at::Tensor matrixOf(const at::Tensor& w)
{
    return w.dim() == 4 ? w.flatten(1) : w;
}

// y = x W^T + b for rows x [M, in], by oneDNN's 1x1 convolution on the rows seen as a
// channels-last image: about twice the speed of the BLAS product here for these shapes. Called
// directly: at::conv2d's heuristics pick a slower kernel for single-image 1x1 convolutions.
at::Tensor pointwiseRows(const at::Tensor& rows, const at::Tensor& w, const at::Tensor& b)
{
    const auto m = rows.size(0), in = rows.size(1), out = w.size(0);
    auto image = rows.view({1, m, 1, in}).permute({0, 3, 1, 2});
    auto y =
        at::mkldnn_convolution(image, w.contiguous().view({out, in, 1, 1}),
                               b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt, {0, 0}, {1, 1}, {1, 1}, 1);
    return y.permute({0, 2, 3, 1}).reshape({m, out});
}

// The same product with its input gradient also by convolution and the weight gradient by
// one matrix product (LibTorch's convolution backward is slow on channels-last inputs).
struct PointwiseFunction : public torch::autograd::Function<PointwiseFunction> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows, const at::Tensor& w,
                              const at::Tensor& b)
    {
        ctx->save_for_backward({rows, w});
        return pointwiseRows(rows, w, b);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads)
    {
        const auto saved = ctx->get_saved_variables();
        const auto& rows = saved[0];
        const auto& w = saved[1];
        auto g = grads[0].contiguous();
        at::Tensor gRows, gW, gB;
        if (ctx->needs_input_grad(0))
            gRows = pointwiseRows(g, w.t().contiguous(), {});
        if (ctx->needs_input_grad(1))
            gW = at::mm(g.t(), rows);
        if (ctx->needs_input_grad(2))
            gB = g.sum(0);
        return {gRows, gW, gB};
    }
};

// A linear map y = x W^T + b, optionally preceded by a per-channel affine of its input
// (x * gamma + beta) and followed by a per-channel scale of its output: both folded into W, b.
struct FoldedLinear {
    at::Tensor weight, bias;
    FoldedLinear(const at::Tensor& w, const at::Tensor& b, const at::Tensor& gamma = {}, const at::Tensor& beta = {},
                 const at::Tensor& scale = {})
    {
        weight = matrixOf(w);
        bias = b;
        if (gamma.defined()) {
            bias = at::addmv(bias, weight, beta);
            weight = weight * gamma.unsqueeze(0);
        }
        if (scale.defined()) {
            weight = weight * scale.unsqueeze(1);
            bias = bias * scale;
        }
    }
    // Tokens [..., in] -> [..., out].
    at::Tensor operator()(const at::Tensor& t) const
    {
        auto shape = t.sizes().vec();
        shape.back() = weight.size(0);
        auto rows = t.reshape({-1, t.size(-1)});
        if (rows.is_cpu() && rows.scalar_type() == at::kFloat && at::GradMode::is_enabled())
            return PointwiseFunction::apply(rows.contiguous(), weight, bias).view(shape);
        if (rows.is_cpu() && rows.scalar_type() == at::kFloat)
            return pointwiseRows(rows.contiguous(), weight, bias).view(shape);
        return at::addmm(bias, rows, weight.t()).view(shape);
    }
};

at::Tensor toCpu(const at::Tensor& t)
{
    return t.to(at::kCPU).contiguous();
}

}  // namespace

at::Tensor addPositionChannels(const at::Tensor& x)
{
    TORCH_CHECK(x.dim() == 4, "expected an input of shape [B, C, H, W], got ", x.sizes());
    const auto b = x.size(0), h = x.size(2), w = x.size(3);
    TORCH_CHECK(h > 1 && w > 1, "input must be at least 2x2, got ", h, "x", w);
    auto opts = x.options();
    auto rows = (at::arange(h, opts) / static_cast<double>(h - 1) - 0.5).view({1, 1, h, 1});
    auto cols = (at::arange(w, opts) / static_cast<double>(w - 1) - 0.5).view({1, 1, 1, w});
    return at::cat({x, rows.expand({b, 1, h, w}), cols.expand({b, 1, h, w})}, 1);
}

ClusterImpl::ClusterImpl(int dim, int heads, int headDim, int proposalW, int proposalH, int foldW, int foldH)
    : m_heads(heads), m_headDim(headDim), m_proposalW(proposalW), m_proposalH(proposalH), m_foldW(foldW), m_foldH(foldH)
{
    TORCH_CHECK(heads > 0 && headDim > 0 && proposalW > 0 && proposalH > 0 && foldW > 0 && foldH > 0,
                "invalid Cluster configuration");
    // 64-bit: heads x head_dim of two 65536s wraps to 0 in an int (FecConfig::validate bounds it).
    const int64_t inner = static_cast<int64_t>(heads) * headDim;
    TORCH_CHECK(inner <= kMaxWidth, "heads x head_dims is ", heads, " x ", headDim, " = ", inner, ", more than ",
                kMaxWidth);
    m_alpha = register_parameter("sim_alpha", at::ones({1}));
    m_beta = register_parameter("sim_beta", at::zeros({1}));
    std::tie(m_f, m_fBias) = affine(*this, "f", {inner, dim, 1, 1}, inner);
    std::tie(m_proj, m_projBias) = affine(*this, "proj", {dim, inner, 1, 1}, dim);
    std::tie(m_v, m_vBias) = affine(*this, "v", {inner, dim, 1, 1}, inner);
}

at::Tensor ClusterImpl::forward(const at::Tensor& x, BlockTrace* trace)
{
    if (!trace && is_training())
        return forwardTraining(x);
    const auto b = x.size(0), height = x.size(2), width = x.size(3);
    const int regions = m_foldW * m_foldH;
    const auto h = height / m_foldW, w = width / m_foldH, n = h * w;
    const int64_t o = static_cast<int64_t>(m_proposalW) * m_proposalH;
    const int64_t g = b * regions, heads = m_heads, d = m_headDim, inner = heads * d;
    const int64_t gh = g * heads;  // one independent clustering problem per (region, head)

    // f and v in one pass over x; channel e*headDim + c of each is head e.
    auto kv = splitRegions(tokens(pointwise(x, at::cat({m_f, m_v}), at::cat({m_fBias, m_vBias}))), m_foldW, m_foldH);
    auto centres = poolCentres(kv, m_proposalW, m_proposalH);  // [g, o, 2 * inner]

    // Results in (region, head)-major order for the trace: similarity [gh, n, o], best
    // similarity s and centre a [gh, n]; out: the heads' outputs as tokens [g, h, w, inner].
    at::Tensor sim, s, a, out;
    if (detail::useClusterKernels(x)) {
        // CPU inference: the same steps on views of kv, without head-major copies (see
        // cluster_kernels.h). Layout [n, g, heads, o] lets one grouped convolution produce
        // every head's products.
        auto kvParts = kv.reshape({g, n, 2, heads, d});
        auto keys = kvParts.select(2, 0);                                               // [g, n, heads, d]
        auto centreParts = centres.view({g, o, 2, heads, d}).permute({2, 0, 3, 1, 4});  // [2, g, heads, o, d]
        auto keyCentres = normalizeLast(centreParts.select(0, 0));
        // One grouped convolution beats the batched product from a few hundred positions on;
        // below, the product on a head-major copy is faster.
        at::Tensor dots;  // [n, g, heads, o]
        if (n >= kGroupedDotsMinPositions) {
            dots = detail::groupedCentreDots(keys, keyCentres);
        } else {
            auto keyRows = keys.permute({0, 2, 1, 3}).reshape({gh, n, d});
            dots = at::bmm(keyRows, keyCentres.reshape({gh, o, d}).transpose(1, 2))
                       .view({g, heads, n, o})
                       .permute({2, 0, 1, 3})
                       .contiguous();
        }
        auto scale = ((keys * keys).sum(-1).sqrt_().clamp_min_(kCosEps).reciprocal_() * m_alpha)
                         .permute({1, 0, 2})
                         .unsqueeze(-1);  // [n, g, heads, 1]
        auto simLocal = at::addcmul(m_beta, dots, scale).sigmoid_();
        auto [best, arg] = simLocal.max(-1);     // [n, g, heads]
        auto argHeads = arg.permute({1, 2, 0});  // [g, heads, n] views
        auto bestHeads = best.permute({1, 2, 0});
        auto reps = detail::clusterRepresentatives(centreParts.select(0, 1), kvParts.select(2, 1).permute({0, 2, 1, 3}),
                                                   argHeads);
        out = detail::dispatchRepresentatives(reps, argHeads, bestHeads).view({g, h, w, inner});
        if (trace) {
            sim = simLocal.permute({1, 2, 0, 3}).reshape({gh, n, o});
            s = bestHeads.reshape({gh, n});
            a = argHeads.reshape({gh, n});
        }
    } else {
        // Every head of every region as one batch entry: one head-major copy of K and V lets
        // each step below run as a single kernel for all heads instead of one per head.
        auto kvHeads = kv.reshape({g, n, 2, heads, d}).permute({2, 0, 3, 1, 4}).contiguous();  // [2, g, heads, n, d]
        auto keys = kvHeads.select(0, 0).view({gh, n, d});
        auto values = kvHeads.select(0, 1).view({gh, n, d});
        auto centreHeads = centres.view({g, o, 2, heads, d}).permute({2, 0, 3, 1, 4}).reshape({2, gh, o, d});
        auto keyCentres = normalizeLast(centreHeads.select(0, 0));  // [gh, o, d]
        auto valueCentres = centreHeads.select(0, 1);

        // sigmoid(beta + alpha * cos), cos = (k . c) / |k| with unit centres c.
        auto scale = inverseNorms(keys) * m_alpha;                                               // [gh, n, 1]
        sim = at::addcmul(m_beta, at::bmm(keys, keyCentres.transpose(1, 2)), scale).sigmoid_();  // [gh, n, o]
        std::tie(s, a) = sim.max(2);                                                             // [gh, n]

        auto reps = representatives(valueCentres, values, a);  // [gh, o, d]
        auto dispatched = reps.gather(1, a.unsqueeze(2).expand({gh, n, d}));
        // In place when no autograd history is recorded (the usual inference case).
        auto headOut = at::GradMode::is_enabled() ? dispatched * s.unsqueeze(2) : dispatched.mul_(s.unsqueeze(2));
        out = headOut.view({g, heads, h, w, d}).permute({0, 2, 3, 1, 4}).reshape({g, h, w, inner});
    }

    if (trace) {
        // Region-local centre ids become region * O + id; positions return to the full grid.
        auto regionOffset = (at::arange(g, a.options()) % regions * o).view({g, 1, 1});
        auto toGrid = [&](const at::Tensor& v) {  // [gh, n] ordered (b, region, head) -> [b, heads, H*W]
            auto byHead = v.reshape({b, regions, heads, n}).transpose(1, 2).reshape({b * heads * regions, n});
            return regionValuesToGrid(byHead, m_foldW, m_foldH, h, w).view({b, heads, height * width});
        };
        trace->height = height;
        trace->width = width;
        trace->heads = m_heads;
        trace->proposalW = m_proposalW;
        trace->proposalH = m_proposalH;
        trace->foldW = m_foldW;
        trace->foldH = m_foldH;
        trace->assign = toCpu(toGrid((a.view({g, heads, n}) + regionOffset).view({gh, n})));
        trace->similarity = toCpu(toGrid(s));
        trace->margin = toCpu(toGrid(topTwoMargin(sim)));
    }
    auto merged = mergeRegions(out, m_foldW, m_foldH);
    return pointwise(fromTokens(merged), m_proj, m_projBias);
}

at::Tensor ClusterImpl::forwardTraining(const at::Tensor& x)
{
    return fromTokens(forwardTokens(tokens(x), {}, {}, {}));
}

at::Tensor ClusterImpl::forwardTokens(const at::Tensor& t, const at::Tensor& gamma, const at::Tensor& beta,
                                      const at::Tensor& scale)
{
    const auto b = t.size(0), height = t.size(1), width = t.size(2);
    const int regions = m_foldW * m_foldH;
    const auto h = height / m_foldW, w = width / m_foldH, n = h * w;
    const int64_t o = static_cast<int64_t>(m_proposalW) * m_proposalH;
    const int64_t g = b * regions, heads = m_heads, d = m_headDim, inner = heads * d;

    auto key = splitRegions(FoldedLinear(m_f, m_fBias, gamma, beta)(t), m_foldW, m_foldH);  // [g, h, w, inner]
    auto value = splitRegions(FoldedLinear(m_v, m_vBias, gamma, beta)(t), m_foldW, m_foldH);
    auto keyCentres = normalizeLast(poolCentres(key, m_proposalW, m_proposalH).view({g, o, heads, d}));
    auto valueCentres = poolCentres(value, m_proposalW, m_proposalH).view({g, o, heads, d});
    auto keys = key.reshape({g, n, inner});

    // All heads in one product: keys [g, n, heads*d] times the block-diagonal matrix of the
    // unit centres [g, heads*d, heads*o] gives every head's dots [g, n, heads, o].
    auto eye = at::eye(heads, t.options()).view({1, heads, 1, heads, 1});
    auto blocks = (keyCentres.permute({0, 2, 3, 1}).unsqueeze(3) * eye).reshape({g, inner, heads * o});
    auto dots = at::bmm(keys, blocks).view({g, n, heads, o});
    auto scaleSim = inverseNorms(keys.view({g, n, heads, d})) * m_alpha;  // [g, n, heads, 1]
    auto sim = at::addcmul(m_beta, dots, scaleSim).sigmoid();
    auto best = sim.max(3);
    const auto& s = std::get<0>(best);  // [g, n, heads]
    const auto& a = std::get<1>(best);

    // Sums and dispatch as products with the one-hot assignment matrix assign [g, n, heads*o]:
    // parallel matrix products instead of serial index_add (for the sums, only the diagonal
    // head blocks of assign^T values are kept; the dispatch multiplies by the block-diagonal
    // representatives).
    at::Tensor assign, count;
    {
        at::NoGradGuard noGrad;
        assign = at::zeros({g, n, heads, o}, t.options()).scatter_(3, a.unsqueeze(3), 1.0);
        count = assign.sum(1).view({g, heads, o, 1});
    }
    auto flatAssign = assign.view({g, n, heads * o});
    auto sums = at::bmm(flatAssign.transpose(1, 2), value.reshape({g, n, inner}))  // [g, heads*o, inner]
                    .view({g, heads, o, heads, d})
                    .diagonal(0, 1, 3)       // [g, o, d, heads]
                    .permute({0, 3, 1, 2});  // [g, heads, o, d]
    auto reps = (sums + valueCentres.permute({0, 2, 1, 3})) / (count + 1.0);
    auto repBlocks = (reps.unsqueeze(3) * eye.view({1, heads, 1, heads, 1})).reshape({g, heads * o, inner});
    auto weights = (assign * s.unsqueeze(3)).view({g, n, heads * o});
    auto out = at::bmm(weights, repBlocks);  // [g, n, inner]: s(n) * R[a(n)] for every head
    auto merged = mergeRegions(out.view({g, h, w, inner}), m_foldW, m_foldH);
    return FoldedLinear(m_proj, m_projBias, {}, {}, scale)(merged);
}

ClusterBlockImpl::ClusterBlockImpl(int dim, int hidden, int heads, int headDim, int proposalW, int proposalH, int foldW,
                                   int foldH)
{
    m_scale1 = register_parameter("layer_scale_1", at::full({dim}, 1e-5));
    m_scale2 = register_parameter("layer_scale_2", at::full({dim}, 1e-5));
    std::tie(m_norm1W, m_norm1B) = groupNorm(*this, "norm1", dim);
    m_mixer = register_module("token_mixer", Cluster(dim, heads, headDim, proposalW, proposalH, foldW, foldH));
    std::tie(m_norm2W, m_norm2B) = groupNorm(*this, "norm2", dim);
    auto mlp = child(*this, "mlp");
    std::tie(m_fc1W, m_fc1B) = affine(*mlp, "fc1", {hidden, dim}, hidden);
    std::tie(m_fc2W, m_fc2B) = affine(*mlp, "fc2", {dim, hidden}, dim);
}

void ClusterBlockImpl::setDropPath(double rate)
{
    TORCH_CHECK(rate >= 0.0 && rate < 1.0, "drop-path rate must be in [0, 1), got ", rate);
    m_dropPath = rate;
}

at::Tensor ClusterBlockImpl::forward(const at::Tensor& x, BlockTrace* trace, at::Tensor* mixerOut)
{
    if (!trace && !mixerOut && is_training())
        return forwardTraining(x);
    // Element-wise work runs on [B, H, W, C] token views: LibTorch 1.13's kernels are up to 6x
    // slower on the same memory seen as a channels-last NCHW tensor.
    auto mixed = m_mixer->forward(at::group_norm(x, 1, m_norm1W, m_norm1B, kNormEps), trace);
    if (mixerOut)
        *mixerOut = mixed;
    auto y = fromTokens(at::addcmul(tokens(x), tokens(mixed), m_scale1));
    auto hidden =
        fromTokens(at::gelu(tokens(pointwise(at::group_norm(y, 1, m_norm2W, m_norm2B, kNormEps), m_fc1W, m_fc1B))));
    return fromTokens(at::addcmul(tokens(y), tokens(pointwise(hidden, m_fc2W, m_fc2B)), m_scale2));
}

at::Tensor ClusterBlockImpl::forwardTraining(const at::Tensor& x)
{
    auto t = tokens(x);
    // Stochastic depth: each sample keeps each residual branch with probability 1 - rate,
    // scaled by 1 / (1 - rate) (timm's drop_path). Masks come from the default generator.
    auto residual = [&](const at::Tensor& base, const at::Tensor& branch) {
        if (m_dropPath <= 0.0)
            return base + branch;
        const double keep = 1.0 - m_dropPath;
        auto mask = at::empty({t.size(0), 1, 1, 1}, t.options()).bernoulli_(keep).div_(keep);
        return at::addcmul(base, branch, mask);
    };
    // norm1's affine and layer_scale_1 are folded into the mixer's f, v and proj.
    auto y = residual(t, m_mixer->forwardTokens(normalizeTokens(t), m_norm1W, m_norm1B, m_scale1));
    auto hidden = at::gelu(FoldedLinear(m_fc1W, m_fc1B, m_norm2W, m_norm2B)(normalizeTokens(y)));
    return fromTokens(residual(y, FoldedLinear(m_fc2W, m_fc2B, {}, {}, m_scale2)(hidden)));
}

ClusterPoolImpl::ClusterPoolImpl(int inDim, int outDim, int foldW, int foldH) : m_foldW(foldW), m_foldH(foldH)
{
    std::tie(m_normW, m_normB) = groupNorm(*this, "norm2", outDim);
    std::tie(m_fW, m_fB) = affine(*this, "conv_f", {outDim, inDim, 1, 1}, outDim);
    std::tie(m_vW, m_vB) = affine(*this, "conv_v", {outDim, inDim, 1, 1}, outDim);
    std::tie(m_skipW, m_skipB) = affine(*this, "conv_skip", {outDim, inDim, 3, 3}, outDim);
}

at::Tensor ClusterPoolImpl::forward(const at::Tensor& x, PoolTrace* trace)
{
    if (!trace && is_training())
        return forwardTraining(x);
    const auto b = x.size(0), height = x.size(2), width = x.size(3);
    const int regions = m_foldW * m_foldH;
    const auto h = height / m_foldW, w = width / m_foldH, n = h * w;
    const auto oh = h / 2, ow = w / 2, m = oh * ow;
    const auto g = b * regions;
    const auto c = m_fW.size(0);

    auto skip = skipConvolution(x, m_skipW, m_skipB);
    // conv_f only feeds the hard arg-max: detached when gradients are recorded, it gets none at
    // all (as in PyTorch, where its .grad stays None) instead of a zero one.
    const bool differentiable = at::GradMode::is_enabled();
    auto fW = differentiable ? m_fW.detach() : m_fW;
    auto fB = differentiable ? m_fB.detach() : m_fB;
    auto kv = splitRegions(tokens(pointwise(x, at::cat({fW, m_vW}), at::cat({fB, m_vB}))), m_foldW, m_foldH);
    auto centres = poolCentres(kv, oh, ow);  // [g, m, 2c]
    auto kvFlat = kv.reshape({g, n, 2 * c});
    auto key = kvFlat.narrow(2, 0, c);
    auto value = kvFlat.narrow(2, c, c);
    auto keyCentres = centres.narrow(2, 0, c);
    auto valueCentres = centres.narrow(2, c, c);

    // The arg-max over centres does not depend on each position's own norm: skip it here.
    at::Tensor dots, a, reps;  // [g, n, m], [g, n], [g, m, c]
    if (detail::useClusterKernels(x)) {
        auto localDots =
            detail::groupedCentreDots(key.unsqueeze(2), normalizeLast(keyCentres).unsqueeze(1));  // [n, g, 1, m]
        auto arg = std::get<1>(localDots.max(-1)).permute({1, 2, 0});                             // [g, 1, n]
        reps = detail::clusterRepresentatives(valueCentres.unsqueeze(1), value.unsqueeze(1), arg).view({g, m, c});
        a = arg.reshape({g, n});
        if (trace)
            dots = localDots.permute({1, 2, 0, 3}).reshape({g, n, m});
    } else {
        // max(dim)'s indices: the same first-best centre as argmax, about twice as fast here.
        dots = at::bmm(key, normalizeLast(keyCentres).transpose(1, 2));
        a = std::get<1>(dots.max(2));
        reps = representatives(valueCentres, value, a);
    }
    auto pooled = mergeRegions(reps.view({g, oh, ow, c}), m_foldW, m_foldH);

    if (trace) {
        trace->inH = height;
        trace->inW = width;
        trace->outH = height / 2;
        trace->outW = width / 2;
        auto cos = dots * inverseNorms(key);
        auto centreIds = regionToGlobal(m_foldW, m_foldH, oh, ow).to(a.device());
        auto globalAssign = centreIds.repeat({b, 1}).gather(1, a);
        trace->assign = toCpu(regionValuesToGrid(globalAssign, m_foldW, m_foldH, h, w));
        trace->similarity = toCpu(regionValuesToGrid(cos.gather(2, a.unsqueeze(2)).squeeze(2), m_foldW, m_foldH, h, w));
        trace->margin = toCpu(regionValuesToGrid(topTwoMargin(cos), m_foldW, m_foldH, h, w));
        auto layout = [&](const at::Tensor& t) {  // [g, m, c] -> [b, M, c] on the full grid
            return toCpu(mergeRegions(t.reshape({g, oh, ow, c}), m_foldW, m_foldH).reshape({b, m * regions, c}));
        };
        trace->keyCentres = layout(keyCentres);
        trace->representatives = layout(reps);
    }
    return fromTokens(tokens(skip) + tokens(at::group_norm(fromTokens(pooled), 1, m_normW, m_normB, kNormEps)));
}

at::Tensor ClusterPoolImpl::forwardTraining(const at::Tensor& x)
{
    const auto b = x.size(0), height = x.size(2), width = x.size(3);
    const int regions = m_foldW * m_foldH;
    const auto h = height / m_foldW, w = width / m_foldH, n = h * w;
    const auto oh = h / 2, ow = w / 2;
    const auto g = b * regions;
    const auto c = m_fW.size(0);

    auto t = tokens(x);
    auto skip = tokens(at::conv2d(x, m_skipW, m_skipB, /*stride=*/2, /*padding=*/1));
    at::Tensor assign;
    {
        at::NoGradGuard noGrad;  // the hard assignment has no gradient; conv_f gets none
        auto key = splitRegions(FoldedLinear(m_fW, m_fB)(t), m_foldW, m_foldH);
        auto keyCentres = normalizeLast(poolCentres(key, oh, ow));
        assign = std::get<1>(at::bmm(key.reshape({g, n, c}), keyCentres.transpose(1, 2)).max(2));
    }
    auto value = splitRegions(FoldedLinear(m_vW, m_vB)(t), m_foldW, m_foldH);
    auto reps = representatives(poolCentres(value, oh, ow), value.reshape({g, n, c}), assign);  // [g, m, c]
    auto pooled = mergeRegions(reps.view({g, oh, ow, c}), m_foldW, m_foldH);
    return fromTokens(at::addcmul(skip + m_normB, normalizeTokens(pooled), m_normW));
}

FecModelImpl::FecModelImpl(const FecConfig& config) : m_config(config)
{
    m_config.validate();
    const auto& c = m_config;
    auto embed = child(*this, "patch_embed");
    std::tie(m_embedW, m_embedB) = affine(*embed, "proj", {c.dims[0], c.inChans + 2, 4, 4}, c.dims[0]);

    auto network = child(*this, "network");
    for (int s = 0; s < 4; ++s) {
        auto stage = child(*network, std::to_string(2 * s));
        for (int j = 0; j < c.layers[s]; ++j) {
            m_blocks[s].push_back(stage->register_module(
                std::to_string(j), ClusterBlock(c.dims[s], c.mlpHidden(s), c.heads[s], c.headDims[s], c.proposalW[s],
                                                c.proposalH[s], c.foldW[s], c.foldH[s])));
        }
        if (s < 3) {
            m_pools.push_back(network->register_module(
                std::to_string(2 * s + 1), ClusterPool(c.dims[s], c.dims[s + 1], c.foldW[s + 1], c.foldH[s + 1])));
        }
    }
    if (c.forkFeat) {
        for (int s = 0; s < 4; ++s) {
            auto [w, b] = groupNorm(*this, "norm" + std::to_string(2 * s), c.dims[s]);
            m_forkNormW.push_back(w);
            m_forkNormB.push_back(b);
        }
    } else {
        std::tie(m_normW, m_normB) = groupNorm(*this, "norm", c.dims[3]);
        if (c.numClasses > 0)
            std::tie(m_headW, m_headB) = affine(*this, "head", {c.numClasses, c.dims[3]}, c.numClasses);
    }
    // Deterministic, PyTorch-like initial values (checkpoints overwrite them).
    at::NoGradGuard noGrad;
    for (auto& p : named_parameters()) {
        const auto& name = p.key();
        auto& t = p.value();
        if (t.numel() == 0)
            continue;
        if (t.dim() >= 2 && name.find("mlp.") == std::string::npos && name.find("head.") == std::string::npos) {
            const double fanIn = static_cast<double>(t.numel() / t.size(0));
            const double bound = 1.0 / std::sqrt(fanIn);
            t.uniform_(-bound, bound);
        } else if (t.dim() >= 2) {
            t.normal_(0.0, 0.02).clamp_(-0.04, 0.04);
        }
    }
}

void FecModelImpl::setDropPath(double rate)
{
    TORCH_CHECK(rate >= 0.0 && rate < 1.0, "drop-path rate must be in [0, 1), got ", rate);
    int total = 0;
    for (const auto& stage : m_blocks)
        total += static_cast<int>(stage.size());
    int index = 0;
    for (auto& stage : m_blocks)
        for (auto& block : stage)
            block->setDropPath(total > 1 ? rate * index++ / (total - 1) : 0.0);
    m_dropPath = rate;
}

int64_t FecModelImpl::parameterCount() const
{
    int64_t total = 0;
    for (const auto& p : parameters())
        total += p.numel();
    return total;
}

at::Tensor FecModelImpl::forward(const at::Tensor& x)
{
    return run(x, nullptr, {});
}

Trace FecModelImpl::forwardTraced(const at::Tensor& x, const TraceOptions& options)
{
    Trace trace;
    auto out = run(x, &trace, options);
    if (!m_config.forkFeat)
        trace.logits = toCpu(out);
    return trace;
}

at::Tensor FecModelImpl::run(const at::Tensor& input, Trace* trace, const TraceOptions& options)
{
    TORCH_CHECK(input.dim() == 4 && input.size(1) == m_config.inChans, "expected input [B, ", m_config.inChans,
                ", H, W], got ", input.sizes());
    try {
        m_config.checkInputSize(input.size(2), input.size(3));
    } catch (const std::invalid_argument& e) {
        TORCH_CHECK(false, e.what());
    }
    const bool features = trace && options.features;
    auto keep = [&](const std::string& name, const at::Tensor& t) {
        if (features)
            trace->features[name] = toCpu(t);
    };

    auto x = at::conv2d(channelsLast(addPositionChannels(input)), m_embedW, m_embedB, /*stride=*/4);
    keep("patch_embed", x);
    for (int s = 0; s < 4; ++s) {
        for (size_t j = 0; j < m_blocks[s].size(); ++j) {
            BlockTrace* blockTrace = nullptr;
            if (trace && options.blocks) {
                trace->blocks.emplace_back();
                blockTrace = &trace->blocks.back();
                blockTrace->stage = s;
                blockTrace->block = static_cast<int>(j);
            }
            at::Tensor mixed;
            x = m_blocks[s][j]->forward(x, blockTrace, features ? &mixed : nullptr);
            const auto name = "network." + std::to_string(2 * s) + "." + std::to_string(j);
            keep(name, x);
            keep(name + ".token_mixer", mixed);
        }
        keep("network." + std::to_string(2 * s), x);
        if (m_config.forkFeat) {
            auto dense = at::group_norm(x, 1, m_forkNormW[s], m_forkNormB[s], kNormEps);
            if (trace)
                trace->denseFeatures.push_back(toCpu(dense));
            if (s == 3)
                return dense;
        }
        if (s < 3) {
            PoolTrace* poolTrace = nullptr;
            if (trace && options.pools) {
                trace->pools.emplace_back();
                poolTrace = &trace->pools.back();
                poolTrace->networkIndex = 2 * s + 1;
            }
            x = m_pools[s]->forward(x, poolTrace);
            keep("network." + std::to_string(2 * s + 1), x);
        }
    }
    if (trace)
        trace->finalMap = toCpu(x);
    auto pre = at::group_norm(x, 1, m_normW, m_normB, kNormEps).mean({2, 3});
    keep("pre_logits", pre);
    if (m_config.numClasses == 0)
        return pre;
    return at::linear(pre, m_headW, m_headB);
}

at::Tensor FecModelImpl::forwardUntil(const at::Tensor& input, int level)
{
    TORCH_CHECK(level >= 1 && level <= 3, "pyramid level must be 1 to 3, got ", level);
    TORCH_CHECK(input.dim() == 4 && input.size(1) == m_config.inChans, "expected input [B, ", m_config.inChans,
                ", H, W], got ", input.sizes());
    try {
        m_config.checkInputSize(input.size(2), input.size(3));
    } catch (const std::invalid_argument& e) {
        TORCH_CHECK(false, e.what());
    }
    auto x = at::conv2d(channelsLast(addPositionChannels(input)), m_embedW, m_embedB, /*stride=*/4);
    for (int s = 0; s < level; ++s) {
        for (auto& block : m_blocks[s])
            x = block->forward(x);
        x = m_pools[s]->forward(x);
    }
    return x;
}

at::Tensor FecModelImpl::forwardFrom(int level, const at::Tensor& poolOutput)
{
    TORCH_CHECK(level >= 1 && level <= 3, "pyramid level must be 1 to 3, got ", level);
    TORCH_CHECK(!m_config.forkFeat && m_config.numClasses > 0,
                "running the network from a pyramid level needs a classification head");
    TORCH_CHECK(poolOutput.dim() == 4 && poolOutput.size(1) == m_config.dims[level], "expected [B, ",
                m_config.dims[level], ", h, w] at level ", level, ", got ", poolOutput.sizes());
    auto x = channelsLast(poolOutput);
    for (int s = level; s < 4; ++s) {
        for (auto& block : m_blocks[s])
            x = block->forward(x);
        if (s < 3)
            x = m_pools[s]->forward(x);
    }
    auto pre = at::group_norm(x, 1, m_normW, m_normB, kNormEps).mean({2, 3});
    return at::linear(pre, m_headW, m_headB);
}

}  // namespace fec
