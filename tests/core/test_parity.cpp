// Numerical parity with the authors' PyTorch implementation (tests/fixtures/reference).

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "fec/checkpoint.h"
#include "reference.h"

namespace fec {
namespace {

using test::loadReference;
using test::maxAbsDiff;
using test::referenceExists;
using test::referencePath;

struct Case {
    std::string model;       // folder under reference/
    std::string checkpoint;  // file under reference/
};

class Parity : public ::testing::TestWithParam<Case> {
protected:
    static Trace runTrace(const std::string& checkpoint, WeightsChoice weights, LoadedModel* out = nullptr)
    {
        LoadOptions options;
        options.weights = weights;
        auto loaded = loadCheckpoint(referencePath(checkpoint), options);
        auto input = loadReference("inputs/input_batch.npy");
        c10::InferenceMode guard;
        TraceOptions traceOptions;
        traceOptions.features = true;
        auto trace = loaded.model->forwardTraced(input, traceOptions);
        if (out)
            *out = loaded;
        return trace;
    }
};

// Assignments must agree wherever the reference's margin leaves no doubt.
void expectAssignmentsMatch(const at::Tensor& ours, const at::Tensor& expected, const at::Tensor& margin,
                            const std::string& what, int64_t* flips = nullptr)
{
    ASSERT_EQ(ours.sizes(), expected.sizes()) << what;
    auto differ = ours.ne(expected);
    auto confident = margin.ge(1e-4);
    const auto wrong = (differ & confident).sum().item<int64_t>();
    EXPECT_EQ(wrong, 0) << what << ": " << wrong << " confident assignments differ";
    if (flips)
        *flips += differ.sum().item<int64_t>();
}

TEST_P(Parity, LogitsAndEveryNetworkOutput)
{
    const auto& c = GetParam();
    ASSERT_TRUE(referenceExists(c.checkpoint)) << "reference fixtures missing at " << test::referenceDir();
    auto trace = runTrace(c.checkpoint, WeightsChoice::StateDict);

    int64_t flips = 0;
    for (size_t p = 0; p < trace.pools.size(); ++p) {
        const auto name = c.model + "/network." + std::to_string(2 * p + 1);
        expectAssignmentsMatch(trace.pools[p].assign, loadReference(name + ".assign.npy"),
                               loadReference(name + ".margin.npy"), name, &flips);
    }
    EXPECT_LE(maxAbsDiff(trace.logits, loadReference(c.model + "/logits.npy")), 1e-4);
    EXPECT_LE(maxAbsDiff(trace.features.at("pre_logits"), loadReference(c.model + "/pre_logits.npy")), 1e-4);

    int compared = 0;
    for (const auto& [name, tensor] : trace.features) {
        const auto file = c.model + "/" + name + ".npy";
        if (!referenceExists(file))
            continue;
        auto expected = loadReference(file);
        ASSERT_EQ(tensor.sizes(), expected.sizes()) << name;
        if (flips == 0) {
            EXPECT_LE(maxAbsDiff(tensor, expected), 1e-4) << name;
        } else {
            // A low-margin flip changes features locally; judge the whole map.
            const double rel = (tensor - expected).norm().item<double>() / expected.norm().item<double>();
            EXPECT_LE(rel, 1e-3) << name;
        }
        ++compared;
    }
    // patch_embed + 7 network outputs + every block and token mixer that the reference stores.
    EXPECT_GE(compared, 10);
}

TEST_P(Parity, PoolAssignmentsCentresAndBlockAssignments)
{
    const auto& c = GetParam();
    auto trace = runTrace(c.checkpoint, WeightsChoice::StateDict);
    ASSERT_EQ(trace.pools.size(), 3u);
    for (size_t p = 0; p < 3; ++p) {
        const auto name = c.model + "/network." + std::to_string(2 * p + 1);
        const auto& pool = trace.pools[p];
        EXPECT_EQ(pool.assign.scalar_type(), at::kLong);
        EXPECT_LE(maxAbsDiff(pool.keyCentres, loadReference(name + ".centers.npy")), 1e-4) << name;
        // Margins we report equal the reference's (same cosine, same top-2).
        EXPECT_LE(maxAbsDiff(pool.margin, loadReference(name + ".margin.npy")), 1e-4) << name;
        // Representatives are what the pool's output is built from: counts must add up.
        EXPECT_EQ(pool.representatives.sizes(), pool.keyCentres.sizes());
    }
    int blocksCompared = 0;
    for (const auto& block : trace.blocks) {
        const auto name = c.model + "/network." + std::to_string(2 * block.stage) + "." + std::to_string(block.block) +
                          ".token_mixer";
        if (!referenceExists(name + ".assign.npy"))
            continue;
        expectAssignmentsMatch(block.assign, loadReference(name + ".assign.npy"), loadReference(name + ".margin.npy"),
                               name);
        EXPECT_LE(maxAbsDiff(block.margin, loadReference(name + ".margin.npy")), 1e-4) << name;
        ++blocksCompared;
    }
    EXPECT_EQ(blocksCompared, static_cast<int>(trace.blocks.size()));
}

INSTANTIATE_TEST_SUITE_P(Reference, Parity,
                         ::testing::Values(Case{"tiny_seed0", "tiny_seed0.pth.tar"},
                                           Case{"fec_small_seed0", "fec_small_seed0.pth.tar"}),
                         [](const auto& info) { return info.param.model; });

TEST(ParityExtra, EmaWeightsGiveTheEmaLogits)
{
    LoadOptions options;  // Auto picks state_dict_ema, like the authors' visualisation
    auto loaded = loadCheckpoint(referencePath("fec_small_seed0.pth.tar"), options);
    EXPECT_EQ(loaded.info.weights, WeightsEntry::StateDictEma);
    auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    auto logits = loaded.model->forward(input);
    EXPECT_LE(maxAbsDiff(logits, loadReference("fec_small_seed0/ema/logits.npy")), 1e-4);
    // ...and measurably not the plain state_dict's.
    EXPECT_GT(maxAbsDiff(logits, loadReference("fec_small_seed0/logits.npy")), 1e-3);
}

TEST(ParityExtra, LegacyFileGivesTheSameLogits)
{
    auto loaded = loadCheckpoint(referencePath("tiny_seed0_legacy.pth"));
    EXPECT_EQ(loaded.info.container, "legacy");
    auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    EXPECT_LE(maxAbsDiff(loaded.model->forward(input), loadReference("tiny_seed0/logits.npy")), 1e-4);
}

TEST(ParityExtra, NegativeAlphaBlockUsesTheSigmoidArgmax)
{
    // tiny's network.4.0 has a negative sim_alpha: argmax of the raw cosine would get every
    // position wrong, so a full match proves the sigmoid is taken first.
    LoadOptions options;
    auto loaded = loadCheckpoint(referencePath("tiny_seed0.pth.tar"), options);
    auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    auto trace = loaded.model->forwardTraced(input);
    for (const auto& block : trace.blocks) {
        if (block.stage == 2 && block.block == 0) {
            auto expected = loadReference("tiny_seed0/network.4.0.token_mixer.assign.npy");
            EXPECT_EQ(block.assign.ne(expected).sum().item<int64_t>(), 0);
            return;
        }
    }
    FAIL() << "block network.4.0 not traced";
}

TEST(ParityExtra, PlainForwardEqualsTracedForward)
{
    auto loaded = loadCheckpoint(referencePath("tiny_seed0.pth.tar"));
    auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    auto plain = loaded.model->forward(input);
    auto traced = loaded.model->forwardTraced(input).logits;
    EXPECT_EQ(maxAbsDiff(plain, traced), 0.0);
}

TEST(ParityExtra, BatchOfOneMatchesTheBatch)
{
    auto loaded = loadCheckpoint(referencePath("tiny_seed0.pth.tar"));
    auto input = loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    auto both = loaded.model->forwardTraced(input);
    auto first = loaded.model->forwardTraced(input.slice(0, 0, 1));
    for (size_t p = 0; p < 3; ++p)
        EXPECT_TRUE(first.pools[p].assign[0].equal(both.pools[p].assign[0]));
    EXPECT_LE(maxAbsDiff(first.logits[0], both.logits[0]), 1e-5);
}

}  // namespace
}  // namespace fec
