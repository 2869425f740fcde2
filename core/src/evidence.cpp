#include "fec/evidence.h"

#include <algorithm>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

namespace fec {

namespace {

constexpr double kNormEps = 1e-5;  // GroupNorm's eps in every FEC model (fec-model.md)

void checkClassifier(const FecModelImpl& model)
{
    const auto& c = model.config();
    if (c.forkFeat || c.numClasses <= 0 || !model.headWeight().defined())
        throw NoClassifierError();
}

}  // namespace

NoClassifierError::NoClassifierError()
    : std::invalid_argument("evidence needs a classification head (GroupNorm + mean + linear); this model is a "
                            "backbone without one (fork_feat)")
{
}

at::Tensor Evidence::logits() const
{
    return contributions.to(at::kDouble).sum(-1).add(bias.to(at::kDouble)).to(at::kFloat);
}

Evidence computeEvidence(FecModelImpl& model, const at::Tensor& finalMap)
{
    checkClassifier(model);
    const int64_t width = model.config().dims[3];
    if (!finalMap.defined() || finalMap.dim() != 4 || finalMap.size(1) != width)
        throw std::invalid_argument("evidence: expected the final map [B, " + std::to_string(width) + ", h, w]");
    c10::InferenceMode guard;
    const auto x = finalMap.detach().to(at::kCPU, at::kDouble).contiguous();
    const int64_t batch = x.size(0), h = x.size(2), w = x.size(3), n = h * w;
    const auto normW = model.normWeight().detach().to(at::kCPU, at::kDouble);
    const auto normB = model.normBias().detach().to(at::kCPU, at::kDouble);
    const auto headW = model.headWeight().detach().to(at::kCPU, at::kDouble);  // [classes, D]
    // Float64 so that the split reproduces the float32 logits to their own rounding.
    const auto y = at::group_norm(x, 1, normW, normB, kNormEps).reshape({batch, width, n});
    Evidence e;
    e.contributions = at::matmul(headW, y).div(static_cast<double>(n)).to(at::kFloat);
    e.bias = model.headBias().detach().to(at::kCPU, at::kFloat).clone();
    e.gridH = h;
    e.gridW = w;
    return e;
}

EvidenceMaps evidenceMaps(const Evidence& evidence, const SegmentPyramid& pyramid, int64_t target, int64_t versus,
                          int64_t index)
{
    const int64_t classes = evidence.contributions.size(1);
    const auto checkClass = [classes](int64_t c, const char* what) {
        if (c < 0 || c >= classes)
            throw std::out_of_range(std::string(what) + " " + std::to_string(c) +
                                    " is out of range: the model has classes 0 to " + std::to_string(classes - 1));
    };
    checkClass(target, "class");
    if (versus >= 0)
        checkClass(versus, "versus class");
    if (index < 0 || index >= evidence.contributions.size(0))
        throw std::out_of_range("evidence: image " + std::to_string(index) + " is not in the batch");
    if (pyramid.levels.empty())
        throw std::invalid_argument("evidence: the pyramid has no levels");
    const auto& last = pyramid.levels.back();
    const int64_t n = evidence.gridH * evidence.gridW;
    if (last.gridH * last.gridW != n)
        throw std::invalid_argument("evidence: the pyramid's last level (" + std::to_string(last.gridH) + "x" +
                                    std::to_string(last.gridW) + ") is not the final map's grid");

    auto c = evidence.contributions[index][target].to(at::kDouble);
    double bias = evidence.bias[target].item<double>();
    if (versus >= 0) {
        c = c - evidence.contributions[index][versus].to(at::kDouble);
        bias -= evidence.bias[versus].item<double>();
    }
    c = c.contiguous();
    EvidenceMaps m;
    m.target = target;
    m.versus = versus;
    m.bias = bias;
    m.segment.assign(c.data_ptr<double>(), c.data_ptr<double>() + n);
    m.pixels.assign(static_cast<size_t>(n), 0);
    const int64_t blockPixels = static_cast<int64_t>(pyramid.blockSize) * pyramid.blockSize;
    for (int32_t label : last.blockLabel)
        if (label >= 0 && label < n)
            m.pixels[static_cast<size_t>(label)] += blockPixels;
    m.logit = bias;
    for (int64_t j = 0; j < n; ++j) {
        m.logit += m.segment[static_cast<size_t>(j)];
        if (m.pixels[static_cast<size_t>(j)] == 0)
            m.unlocated += m.segment[static_cast<size_t>(j)];
    }

    auto total = at::empty({pyramid.blockH, pyramid.blockW}, at::kFloat);
    auto density = at::empty({pyramid.blockH, pyramid.blockW}, at::kFloat);
    auto* t = total.data_ptr<float>();
    auto* d = density.data_ptr<float>();
    for (size_t b = 0; b < last.blockLabel.size(); ++b) {
        const auto j = static_cast<size_t>(last.blockLabel[b]);
        t[b] = static_cast<float>(m.segment[j]);
        d[b] = static_cast<float>(m.segment[j] / static_cast<double>(m.pixels[j]));
    }
    const int64_t s = pyramid.blockSize;
    m.total = total.repeat_interleave(s, 0).repeat_interleave(s, 1).contiguous();
    m.density = density.repeat_interleave(s, 0).repeat_interleave(s, 1).contiguous();
    return m;
}

AblationBaseline parseAblationBaseline(const std::string& text)
{
    if (text == "mean")
        return AblationBaseline::Mean;
    if (text == "zero")
        return AblationBaseline::Zero;
    if (text == "dataset")
        return AblationBaseline::Dataset;
    throw std::invalid_argument("unknown ablation baseline '" + text + "' (use mean, zero or dataset)");
}

std::string ablationBaselineName(AblationBaseline baseline)
{
    switch (baseline) {
    case AblationBaseline::Mean:
        return "mean";
    case AblationBaseline::Zero:
        return "zero";
    case AblationBaseline::Dataset:
        return "dataset";
    }
    return "mean";
}

SegmentAblator::SegmentAblator(FecModelImpl& model, const at::Tensor& input, int level, std::vector<int32_t> segments,
                               const AblationOptions& options)
    : m_model(model), m_level(level), m_segments(std::move(segments)), m_batch(std::max(1, options.batch))
{
    checkClassifier(model);
    if (level < 1 || level > 3)
        throw std::invalid_argument("ablation: level " + std::to_string(level) + " does not exist (levels 1 to 3)");
    if (input.dim() != 4 || input.size(0) != 1)
        throw std::invalid_argument("ablation: expected one image [1, C, H, W]");
    c10::InferenceMode guard;
    m_pooled = model.forwardUntil(input, level).contiguous();
    const int64_t width = m_pooled.size(1), n = m_pooled.size(2) * m_pooled.size(3);
    for (int32_t s : m_segments)
        if (s < 0 || s >= n)
            throw std::invalid_argument("ablation: segment " + std::to_string(s) + " is not a position of level " +
                                        std::to_string(level) + " (0 to " + std::to_string(n - 1) + ")");
    const auto flat = m_pooled[0].reshape({width, n});
    switch (options.baseline) {
    case AblationBaseline::Mean: {
        if (m_segments.empty()) {
            m_baseline = flat.mean(1);
        } else {
            const auto ids =
                at::tensor(std::vector<int64_t>(m_segments.begin(), m_segments.end()), at::kLong).to(m_pooled.device());
            m_baseline = flat.index_select(1, ids).mean(1);
        }
        break;
    }
    case AblationBaseline::Zero:
        m_baseline = at::zeros({width}, m_pooled.options());
        break;
    case AblationBaseline::Dataset:
        if (!options.datasetMean.defined() || options.datasetMean.numel() != width)
            throw std::invalid_argument("ablation: the dataset baseline needs a mean feature of " +
                                        std::to_string(width) + " values for level " + std::to_string(level) +
                                        " (compute one with `fec evidence-stats`)");
        m_baseline = options.datasetMean.reshape({width}).to(m_pooled.options());
        break;
    }
    m_base = model.forwardFrom(level, m_pooled)[0].to(at::kCPU, at::kFloat);
}

at::Tensor SegmentAblator::baseline() const
{
    return m_baseline.to(at::kCPU, at::kFloat);
}

at::Tensor SegmentAblator::edited(const std::vector<int32_t>& positions) const
{
    auto x = m_pooled.clone();
    auto flat = x[0].view({x.size(1), x.size(2) * x.size(3)});
    for (int32_t p : positions)
        flat.select(1, p).copy_(m_baseline);
    return x;
}

at::Tensor SegmentAblator::singleEffects(const std::function<void()>& cancel)
{
    c10::InferenceMode guard;
    const int64_t count = static_cast<int64_t>(m_segments.size());
    const int64_t width = m_pooled.size(1), n = m_pooled.size(2) * m_pooled.size(3);
    auto effects = at::empty({count, m_base.size(0)}, at::kFloat);
    for (int64_t start = 0; start < count; start += m_batch) {
        if (cancel)
            cancel();
        const int64_t size = std::min<int64_t>(m_batch, count - start);
        auto batch = m_pooled.expand({size, width, m_pooled.size(2), m_pooled.size(3)}).clone();
        auto flat = batch.view({size, width, n});
        for (int64_t i = 0; i < size; ++i)
            flat[i].select(1, m_segments[static_cast<size_t>(start + i)]).copy_(m_baseline);
        const auto logits = m_model.forwardFrom(m_level, batch).to(at::kCPU, at::kFloat);
        effects.narrow(0, start, size).copy_(m_base.unsqueeze(0) - logits);
    }
    return effects;
}

at::Tensor SegmentAblator::removing(const std::vector<int32_t>& remove)
{
    c10::InferenceMode guard;
    const int64_t n = m_pooled.size(2) * m_pooled.size(3);
    for (int32_t p : remove)
        if (p < 0 || p >= n)
            throw std::invalid_argument("ablation: segment " + std::to_string(p) + " is not a position of level " +
                                        std::to_string(m_level));
    return m_model.forwardFrom(m_level, edited(remove))[0].to(at::kCPU, at::kFloat);
}

at::Tensor SegmentAblator::removingEach(const std::vector<std::vector<int32_t>>& sets)
{
    c10::InferenceMode guard;
    const int64_t width = m_pooled.size(1), n = m_pooled.size(2) * m_pooled.size(3);
    for (const auto& set : sets)
        for (int32_t p : set)
            if (p < 0 || p >= n)
                throw std::invalid_argument("ablation: segment " + std::to_string(p) + " is not a position of level " +
                                            std::to_string(m_level));
    const auto count = static_cast<int64_t>(sets.size());
    auto logits = at::empty({count, m_base.size(0)}, at::kFloat);
    for (int64_t start = 0; start < count; start += m_batch) {
        const int64_t size = std::min<int64_t>(m_batch, count - start);
        auto batch = m_pooled.expand({size, width, m_pooled.size(2), m_pooled.size(3)}).clone();
        auto flat = batch.view({size, width, n});
        for (int64_t i = 0; i < size; ++i)
            for (int32_t p : sets[static_cast<size_t>(start + i)])
                flat[i].select(1, p).copy_(m_baseline);
        logits.narrow(0, start, size).copy_(m_model.forwardFrom(m_level, batch).to(at::kCPU, at::kFloat));
    }
    return logits;
}

at::Tensor SegmentAblator::keepingOnly(const std::vector<int32_t>& keep)
{
    const int64_t n = m_pooled.size(2) * m_pooled.size(3);
    std::vector<uint8_t> kept(static_cast<size_t>(n), 0);
    for (int32_t p : keep) {
        if (p < 0 || p >= n)
            throw std::invalid_argument("ablation: segment " + std::to_string(p) + " is not a position of level " +
                                        std::to_string(m_level));
        kept[static_cast<size_t>(p)] = 1;
    }
    std::vector<int32_t> others;
    for (int32_t p = 0; p < n; ++p)
        if (!kept[static_cast<size_t>(p)])
            others.push_back(p);
    return removing(others);
}

}  // namespace fec
