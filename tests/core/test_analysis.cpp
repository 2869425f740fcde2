// Segment pyramid, hierarchy and lineage: against the reference maps and as properties.

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "reference.h"

namespace fec {
namespace {

// True when two label maps describe the same partition (equal up to renaming labels).
bool samePartition(const at::Tensor& a, const at::Tensor& b)
{
    auto x = a.reshape(-1).to(at::kLong).contiguous();
    auto y = b.reshape(-1).to(at::kLong).contiguous();
    if (x.numel() != y.numel())
        return false;
    std::map<int64_t, int64_t> forward, backward;
    for (int64_t i = 0; i < x.numel(); ++i) {
        const auto p = x.data_ptr<int64_t>()[i], q = y.data_ptr<int64_t>()[i];
        auto [f, fNew] = forward.emplace(p, q);
        auto [r, rNew] = backward.emplace(q, p);
        if (f->second != q || r->second != p)
            return false;
    }
    return true;
}

Trace traceReference(const std::string& checkpoint, WeightsChoice weights = WeightsChoice::StateDict)
{
    auto loaded = loadCheckpoint(test::referencePath(checkpoint), {weights, {}});
    c10::InferenceMode guard;
    return loaded.model->forwardTraced(test::loadReference("inputs/input_batch.npy"));
}

class PyramidReference : public ::testing::TestWithParam<std::string> {};

TEST_P(PyramidReference, LevelsAreTheReferencePartitions)
{
    const auto model = GetParam();
    auto trace = traceReference(model + ".pth.tar");
    auto level28 = test::loadReference(model + "/segments/level28.npy");
    auto level14 = test::loadReference(model + "/segments/level14.npy");
    auto final = test::loadReference(model + "/segments/final.npy");
    for (int i = 0; i < 2; ++i) {
        auto p = buildPyramid(trace, i);
        ASSERT_EQ(p.levelCount(), 3);
        EXPECT_EQ(p.levels[0].gridH, 28);
        EXPECT_EQ(p.levels[2].gridW, 7);
        auto labels = p.allPixelLabels();
        EXPECT_EQ(labels.sizes(), (std::vector<int64_t>{3, 224, 224}));
        EXPECT_TRUE(samePartition(labels[0], level28[i])) << "level 1, image " << i;
        EXPECT_TRUE(samePartition(labels[1], level14[i])) << "level 2, image " << i;
        // The final level uses the reference's own compact labels (index into non-empty ids).
        EXPECT_TRUE(labels[2].to(at::kLong).equal(final[i])) << "level 3, image " << i;
        auto nonEmpty = test::loadReference(model + "/segments/non_empty_clusters_" + std::to_string(i) + ".npy");
        EXPECT_EQ(static_cast<int64_t>(p.levels[2].nonEmpty.size()), nonEmpty.numel());
        for (int64_t k = 0; k < nonEmpty.numel(); ++k)
            EXPECT_EQ(p.levels[2].nonEmpty[k], nonEmpty[k].item<int64_t>());
        // Raw ids at level 1 equal the reference's (they are centre ids on the 28x28 grid).
        EXPECT_EQ(p.clusterAt(1, 100, 37), level28[i][37][100].item<int64_t>());
    }
}

INSTANTIATE_TEST_SUITE_P(Reference, PyramidReference, ::testing::Values("tiny_seed0", "fec_small_seed0"));

TEST(Pyramid, EmaWeightsGiveTheEmaFinalMap)
{
    auto trace = traceReference("fec_small_seed0.pth.tar", WeightsChoice::Ema);
    auto expected = test::loadReference("fec_small_seed0/ema/final.npy");
    for (int i = 0; i < 2; ++i)
        EXPECT_TRUE(buildPyramid(trace, i).pixelLabels(3).to(at::kLong).equal(expected[i]));
}

// Random models and sizes: invariants every pyramid must satisfy.
TEST(Pyramid, PropertiesOnRandomInputsAndSizes)
{
    FecConfig config = FecConfig::small();
    config.layers = {1, 1, 1, 1};
    config.numClasses = 7;
    at::manual_seed(3);
    FecModel model(config);
    model->eval();
    for (auto [h, w] : {std::pair<int, int>{64, 64}, {96, 160}, {256, 224}}) {
        c10::InferenceMode guard;
        auto trace = model->forwardTraced(at::randn({2, 3, h, w}));
        for (int i = 0; i < 2; ++i) {
            auto p = buildPyramid(trace, i);
            ASSERT_EQ(p.inputH, h);
            ASSERT_EQ(p.inputW, w);
            auto labels = p.allPixelLabels();
            // Every pixel has exactly one (valid) label per level.
            for (int l = 0; l < 3; ++l) {
                EXPECT_GE(labels[l].min().item<int>(), 0);
                EXPECT_LT(labels[l].max().item<int>(), static_cast<int>(p.levels[l].nonEmpty.size()));
                EXPECT_EQ(p.levels[l].emptyCount() + static_cast<int>(p.levels[l].nonEmpty.size()),
                          p.levels[l].gridH * p.levels[l].gridW);
            }
            // Nesting: a level-l segment lies inside one level-(l+1) segment.
            for (int l = 0; l < 2; ++l) {
                std::map<int, int> parentOf;
                auto fine = labels[l].reshape(-1), coarse = labels[l + 1].reshape(-1);
                for (int64_t k = 0; k < fine.numel(); k += 3) {
                    auto [it, added] = parentOf.emplace(fine[k].item<int>(), coarse[k].item<int>());
                    ASSERT_EQ(it->second, coarse[k].item<int>()) << "segment split across parents";
                }
            }
            // Sizes add up: children's pixels sum to the parent's; each level covers the image.
            for (int l = 0; l < 3; ++l) {
                int64_t total = 0;
                for (int id : p.levelNodes[l])
                    total += p.nodes[id].pixels;
                EXPECT_EQ(total, static_cast<int64_t>(h) * w);
            }
            for (const auto& node : p.nodes) {
                if (node.level == 1)
                    continue;
                int64_t sum = 0;
                for (int c : node.children) {
                    sum += p.nodes[c].pixels;
                    EXPECT_EQ(p.nodes[c].parent, node.id);
                }
                EXPECT_EQ(sum, node.pixels);
                EXPECT_GE(node.cx, node.x0);
                EXPECT_LE(node.cx, node.x1);
            }
            // Lineage agrees with the label maps, and ancestors with the tree.
            for (auto [x, y] : {std::pair<int, int>{0, 0}, {w - 1, h - 1}, {w / 3, h / 2}}) {
                auto lineage = lineageOf(p, x, y);
                ASSERT_EQ(lineage.steps.size(), 3u);
                for (int l = 0; l < 3; ++l) {
                    const auto& step = lineage.steps[l];
                    EXPECT_EQ(p.levels[l].compact[step.cluster], labels[l][y][x].item<int>());
                    EXPECT_GE(step.margin, 0.0f);
                    if (l > 0)
                        EXPECT_EQ(p.nodes[lineage.steps[l - 1].node].parent, step.node);
                }
                EXPECT_EQ(p.ancestorsOfPixel(x, y)[2], lineage.steps[2].node);
            }
            // Descendants of a top node at level 1 are exactly its pixels' level-1 segments.
            const int top = p.levelNodes[2].front();
            int64_t pixels = 0;
            for (int d : p.descendantsAt(top, 1))
                pixels += p.nodes[d].pixels;
            EXPECT_EQ(pixels, p.nodes[top].pixels);
        }
    }
}

TEST(Analysis, AdjustedRandIndex)
{
    const int64_t a[] = {0, 0, 1, 1, 2, 2};
    const int64_t renamed[] = {5, 5, 3, 3, 9, 9};
    const int64_t other[] = {0, 1, 0, 1, 0, 1};
    EXPECT_DOUBLE_EQ(adjustedRandIndex(a, renamed, 6), 1.0);
    EXPECT_LT(adjustedRandIndex(a, other, 6), 0.0 + 1e-9);
}

TEST(Analysis, EncodingPartitionsCoverEveryHeadAndBlock)
{
    auto trace = traceReference("fec_small_seed0.pth.tar");
    auto parts = encodingPartitions(trace, 0);
    ASSERT_EQ(parts.size(), 14u);  // 3 + 4 + 5 + 2 blocks
    EXPECT_EQ(parts[0].heads, 4);
    EXPECT_EQ(parts[0].centres, 16);
    EXPECT_EQ(parts[0].gridH, 56);
    EXPECT_EQ(parts[13].centres, 4);
    EXPECT_EQ(parts[13].stride, 32);
    for (const auto& part : parts) {
        EXPECT_EQ(part.agreement.size(0), part.heads);
        EXPECT_DOUBLE_EQ(part.agreement[0][0].item<double>(), 1.0);
        EXPECT_LE(part.agreement.max().item<double>(), 1.0 + 1e-12);
    }
}

TEST(Analysis, HierarchyJsonListsEveryNode)
{
    auto trace = traceReference("tiny_seed0.pth.tar");
    auto p = buildPyramid(trace, 0);
    auto json = hierarchyJson(p);
    EXPECT_NE(json.find("\"levels\""), std::string::npos);
    size_t count = 0;
    for (size_t pos = json.find("\"parent\""); pos != std::string::npos; pos = json.find("\"parent\"", pos + 1))
        ++count;
    EXPECT_EQ(count, p.nodes.size());
}

}  // namespace
}  // namespace fec
