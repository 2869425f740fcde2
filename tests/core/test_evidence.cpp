// Segment evidence: the exact split of every logit over the final clusters, its pixel maps, and
// segment ablation against a brute-force loop.

#include <cmath>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/evidence.h"
#include "reference.h"

namespace fec {
namespace {

using test::loadReference;
using test::referencePath;

struct ModelCase {
    std::string name;
    std::function<FecModel()> make;
    int64_t batch, height, width;
};

FecModel loaded(const std::string& path)
{
    auto model = loadCheckpoint(path).model;
    model->eval();
    return model;
}

FecModel random(FecConfig c)
{
    at::manual_seed(11);
    FecModel model(c);
    model->eval();
    return model;
}

FecConfig foldedConfig()
{
    auto c = FecConfig::small();
    c.variant = "custom";
    c.layers = {1, 1, 1, 1};
    c.foldW = {2, 2, 1, 1};
    c.foldH = {2, 1, 1, 1};
    c.numClasses = 7;
    return c;
}

// Relative agreement of two logit tensors, scaled by the larger of 1 and the largest logit.
double relativeError(const at::Tensor& a, const at::Tensor& b)
{
    const double scale = std::max(1.0, b.abs().max().item<double>());
    return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

class EvidenceSplit : public ::testing::TestWithParam<ModelCase> {};

TEST_P(EvidenceSplit, ContributionsPlusBiasAreTheLogits)
{
    const auto& c = GetParam();
    auto model = c.make();
    at::manual_seed(3);
    const auto input = c.name.rfind("reference", 0) == 0 ? loadReference("inputs/input_batch.npy")
                                                         : at::randn({c.batch, 3, c.height, c.width});
    c10::InferenceMode guard;
    const auto trace = model->forwardTraced(input);
    ASSERT_TRUE(trace.finalMap.defined());
    const auto e = computeEvidence(*model, trace.finalMap);
    const int64_t classes = model->config().numClasses;
    ASSERT_EQ(e.contributions.sizes(), (at::IntArrayRef{input.size(0), classes, e.gridH * e.gridW}));
    EXPECT_EQ(e.gridH, trace.finalMap.size(2));
    EXPECT_LE(relativeError(e.logits(), trace.logits), 1e-5) << c.name;

    // A contrast is the difference of the two classes' splits, position by position.
    const auto pyramid = buildPyramid(trace, 0);
    const auto a = evidenceMaps(e, pyramid, 0, -1), b = evidenceMaps(e, pyramid, classes - 1, -1);
    const auto ab = evidenceMaps(e, pyramid, 0, classes - 1);
    for (size_t j = 0; j < ab.segment.size(); ++j)
        EXPECT_NEAR(ab.segment[j], a.segment[j] - b.segment[j], 1e-6);
    EXPECT_NEAR(ab.logit, a.logit - b.logit, 1e-5 * std::max(1.0, std::abs(a.logit)));
    EXPECT_NEAR(a.logit, trace.logits[0][0].item<double>(), 1e-5 * std::max(1.0, std::abs(a.logit)));
}

const ModelCase kCases[] = {
    {"reference_tiny", [] { return loaded(referencePath("tiny_seed0.pth.tar")); }, 2, 224, 224},
    {"reference_fec_small", [] { return loaded(referencePath("fec_small_seed0.pth.tar")); }, 2, 224, 224},
    {"default_model", [] { return loaded(FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar"); }, 2, 128, 128},
    {"folded", [] { return random(foldedConfig()); }, 2, 128, 96},
    {"non_square",
     [] {
         auto c = FecConfig::small();
         c.layers = {1, 1, 1, 1};
         c.numClasses = 5;
         return random(c);
     },
     1, 96, 160},
};

INSTANTIATE_TEST_SUITE_P(Models, EvidenceSplit, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(EvidenceMaps, DensitySumsToTheLocatedEvidenceAndTotalsAreConstantPerSegment)
{
    auto model = loaded(referencePath("fec_small_seed0.pth.tar"));
    c10::InferenceMode guard;
    const auto trace = model->forwardTraced(loadReference("inputs/input_batch.npy"));
    const auto e = computeEvidence(*model, trace.finalMap);
    for (int64_t image = 0; image < 2; ++image) {
        const auto pyramid = buildPyramid(trace, image);
        const int64_t target = trace.logits[image].argmax().item<int64_t>();
        const auto m = evidenceMaps(e, pyramid, target, -1, image);
        ASSERT_EQ(m.density.sizes(), (at::IntArrayRef{224, 224}));
        const double located = m.density.to(at::kDouble).sum().item<double>();
        EXPECT_NEAR(located, m.logit - m.bias - m.unlocated, 1e-4 * std::max(1.0, std::abs(m.logit)));
        // Empty final clusters hold evidence that no pixel shows; it is reported, never dropped.
        const auto& last = pyramid.levels.back();
        double emptyShare = 0;
        for (size_t j = 0; j < m.segment.size(); ++j)
            if (last.compact[j] < 0) {
                EXPECT_EQ(m.pixels[j], 0);
                emptyShare += m.segment[j];
            }
        EXPECT_NEAR(m.unlocated, emptyShare, 1e-9);
        // Every pixel of a segment shows that segment's total.
        const auto labels = pyramid.pixelLabels(pyramid.levelCount());
        for (int y : {0, 100, 223})
            for (int x : {0, 57, 223}) {
                const int32_t raw = last.nonEmpty[static_cast<size_t>(labels[y][x].item<int32_t>())];
                EXPECT_FLOAT_EQ(m.total[y][x].item<float>(), static_cast<float>(m.segment[static_cast<size_t>(raw)]));
            }
    }
}

TEST(EvidenceMaps, ClassOutOfRangeSaysTheRange)
{
    auto model = loaded(referencePath("tiny_seed0.pth.tar"));
    c10::InferenceMode guard;
    const auto trace = model->forwardTraced(loadReference("inputs/input_batch.npy"));
    const auto e = computeEvidence(*model, trace.finalMap);
    const auto pyramid = buildPyramid(trace, 0);
    try {
        evidenceMaps(e, pyramid, 10);
        FAIL() << "class 10 of 10 accepted";
    } catch (const std::out_of_range& err) {
        EXPECT_NE(std::string(err.what()).find("0 to 9"), std::string::npos) << err.what();
    }
}

TEST(Evidence, BackboneWithoutHeadIsRefusedWithAReason)
{
    auto c = FecConfig::small();
    c.layers = {1, 1, 1, 1};
    c.forkFeat = true;
    c.numClasses = 0;
    auto model = random(c);
    try {
        computeEvidence(*model, at::zeros({1, c.dims[3], 7, 7}));
        FAIL() << "a backbone was accepted";
    } catch (const NoClassifierError& e) {
        EXPECT_NE(std::string(e.what()).find("classification head"), std::string::npos);
    }
}

TEST(Ablation, SplitNetworkIsTheNetwork)
{
    auto model = loaded(referencePath("tiny_seed0.pth.tar"));
    const auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    const auto logits = model->forward(input);
    for (int level = 1; level <= 3; ++level)
        EXPECT_LE(relativeError(model->forwardFrom(level, model->forwardUntil(input, level)), logits), 1e-5) << level;
}

class AblationLevels : public ::testing::TestWithParam<int> {};

// Every segment of a level in batched forwards equals a loop that edits one position at a time
// and runs the rest of the network on that single image.
TEST_P(AblationLevels, BatchedEffectsEqualTheBruteForceLoop)
{
    const int level = GetParam();
    auto model = loaded(FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar");
    at::manual_seed(1);
    const auto input = at::randn({1, 3, 128, 128});
    c10::InferenceMode guard;
    const auto trace = model->forwardTraced(input);
    const auto pyramid = buildPyramid(trace, 0);
    const auto& segments = pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty;
    AblationOptions options;
    options.batch = 7;  // several batches, the last one partial
    SegmentAblator ablator(*model, input, level, segments, options);
    EXPECT_LE(relativeError(ablator.baseLogits(), trace.logits[0]), 1e-5);
    const auto effects = ablator.singleEffects();
    ASSERT_EQ(effects.size(0), static_cast<int64_t>(segments.size()));

    const auto pooled = model->forwardUntil(input, level).contiguous();
    const int64_t width = pooled.size(1), n = pooled.size(2) * pooled.size(3);
    const auto flat = pooled[0].reshape({width, n});
    const auto ids = at::tensor(std::vector<int64_t>(segments.begin(), segments.end()), at::kLong);
    const auto mean = flat.index_select(1, ids).mean(1);
    EXPECT_TRUE(at::allclose(ablator.baseline(), mean, 1e-6, 1e-6));
    for (size_t i = 0; i < segments.size(); ++i) {
        auto edited = pooled.clone();
        for (int64_t d = 0; d < width; ++d)
            edited[0][d][segments[i] / pooled.size(3)][segments[i] % pooled.size(3)] = mean[d];
        const auto expected = trace.logits[0] - model->forwardFrom(level, edited)[0];
        EXPECT_LE((effects[static_cast<int64_t>(i)] - expected).abs().max().item<double>(),
                  1e-4 * std::max(1.0, expected.abs().max().item<double>()))
            << "level " << level << " segment " << segments[i];
    }
    // Removing nothing or keeping everything changes nothing; removing one equals its effect.
    EXPECT_TRUE(at::allclose(ablator.removing({}), ablator.baseLogits(), 1e-5, 1e-5));
    std::vector<int32_t> all(static_cast<size_t>(n));
    for (int32_t p = 0; p < n; ++p)
        all[static_cast<size_t>(p)] = p;
    EXPECT_TRUE(at::allclose(ablator.keepingOnly(all), ablator.baseLogits(), 1e-5, 1e-5));
    EXPECT_TRUE(at::allclose(ablator.baseLogits() - ablator.removing({segments[0]}), effects[0], 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Levels, AblationLevels, ::testing::Values(1, 2, 3));

TEST(Ablation, BaselinesAndBadInput)
{
    auto model = loaded(referencePath("tiny_seed0.pth.tar"));
    const auto input = loadReference("inputs/input_batch.npy").narrow(0, 0, 1);
    AblationOptions zero;
    zero.baseline = AblationBaseline::Zero;
    SegmentAblator z(*model, input, 3, {0, 1, 2}, zero);
    EXPECT_EQ(z.baseline().abs().sum().item<double>(), 0.0);
    AblationOptions dataset;
    dataset.baseline = AblationBaseline::Dataset;
    EXPECT_THROW(SegmentAblator(*model, input, 3, {0}, dataset), std::invalid_argument);
    dataset.datasetMean = at::full({model->config().dims[3]}, 0.5);
    SegmentAblator d(*model, input, 3, {0}, dataset);
    EXPECT_NEAR(d.baseline().mean().item<double>(), 0.5, 1e-6);
    EXPECT_THROW(SegmentAblator(*model, input, 4, {0}), std::invalid_argument);
    EXPECT_THROW(SegmentAblator(*model, input, 3, {49}), std::invalid_argument);  // 7x7 grid: 0..48
    EXPECT_EQ(parseAblationBaseline("zero"), AblationBaseline::Zero);
    EXPECT_THROW(parseAblationBaseline("median"), std::invalid_argument);
}

}  // namespace
}  // namespace fec
