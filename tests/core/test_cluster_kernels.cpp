// The CPU inference kernels of the clustering steps (core/src/cluster_kernels.h) against the
// ATen path they replace: each kernel against its definition, then whole networks with the
// kernels on and off (what a user would see: the same logits and the same clusters).

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "../../core/src/cluster_kernels.h"
#include "fec/model.h"

namespace fec {
namespace {

// Restores the kernels' switch whatever a test does.
struct KernelsSwitch {
    explicit KernelsSwitch(bool on) { detail::setClusterKernelsEnabled(on); }
    ~KernelsSwitch() { detail::setClusterKernelsEnabled(true); }
};

TEST(ClusterKernels, GroupedDotsAreEveryKeyTimesItsGroupsCentres)
{
    at::manual_seed(2);
    auto kv = at::randn({2, 300, 2, 3, 8});  // keys are a strided view, like a block's f/v output
    auto keys = kv.select(2, 0);             // [G=2, n=300, P=3, d=8]
    auto centres = at::randn({2, 3, 5, 8});  // [G, P, o, d]
    auto dots = detail::groupedCentreDots(keys, centres);
    auto expected = at::einsum("gnpd,gpod->ngpo", {keys, centres});
    ASSERT_EQ(dots.sizes(), expected.sizes());
    EXPECT_TRUE(at::allclose(dots, expected, 1e-4, 1e-4));
    EXPECT_THROW(detail::groupedCentreDots(keys, at::randn({2, 3, 5, 7})), c10::Error);
}

TEST(ClusterKernels, RepresentativesAverageTheCentreWithItsRows)
{
    at::manual_seed(3);
    const int64_t g = 2, p = 3, n = 50, d = 4, o = 6;
    auto values = at::randn({g, n, p, d}).permute({0, 2, 1, 3});  // strided [G, P, n, d]
    auto centres = at::randn({g, p, o, d});
    auto assign = at::randint(o - 1, {g, p, n}, at::kLong);  // centre o - 1 stays empty
    auto reps = detail::clusterRepresentatives(centres, values, assign);

    auto oneHot = at::one_hot(assign, o).to(at::kFloat);     // [G, P, n, o]
    auto sums = at::matmul(oneHot.transpose(2, 3), values);  // [G, P, o, d]
    auto counts = oneHot.sum(2).unsqueeze(-1);               // [G, P, o, 1]
    auto expected = (sums + centres) / (counts + 1.0);
    EXPECT_TRUE(at::allclose(reps, expected, 1e-5, 1e-5));
    // An empty cluster keeps its centre.
    EXPECT_TRUE(at::equal(reps.select(2, o - 1), centres.select(2, o - 1)));

    auto bad = assign.clone();
    bad[1][2][7] = o;
    EXPECT_THROW(detail::clusterRepresentatives(centres, values, bad), c10::Error);
}

TEST(ClusterKernels, DispatchGivesEachPositionItsWeightedRepresentative)
{
    at::manual_seed(4);
    const int64_t g = 2, p = 3, n = 40, d = 5, o = 4;
    auto reps = at::randn({g, p, o, d});
    auto assign = at::randint(o, {g, n, p}, at::kLong).permute({0, 2, 1});  // strided [G, P, n]
    auto weight = at::rand({g, p, n});
    auto out = detail::dispatchRepresentatives(reps, assign, weight);
    auto picked = reps.gather(2, assign.unsqueeze(-1).expand({g, p, n, d})) * weight.unsqueeze(-1);  // [G, P, n, d]
    auto expected = picked.permute({0, 2, 1, 3}).reshape({g, n, p * d});
    EXPECT_TRUE(at::equal(out, expected));
}

struct NetworkCase {
    const char* name;
    FecConfig config;
    int64_t batch, height, width;
};

FecConfig folded()
{
    auto c = FecConfig::small();
    c.variant = "custom";
    c.layers = {1, 1, 1, 1};
    c.foldW = {2, 2, 1, 1};
    c.foldH = {2, 1, 1, 1};
    return c;
}

FecConfig fashionLike()
{
    FecConfig c;
    c.variant = "custom";
    c.layers = {1, 1, 2, 1};
    c.dims = {32, 64, 128, 192};
    c.heads = {2, 2, 4, 4};
    c.headDims = {16, 16, 16, 16};
    c.mlpRatios = {4, 4, 4, 4};
    c.numClasses = 10;
    return c;
}

class KernelsAgainstAten : public ::testing::TestWithParam<NetworkCase> {};

// The kernels change only the order of a few roundings: logits agree to float precision and
// every assignment that is not a near-tie is the same.
TEST_P(KernelsAgainstAten, SameLogitsAndClusters)
{
    const auto& c = GetParam();
    at::manual_seed(5);
    FecModel model(c.config);
    model->eval();
    auto input = at::randn({c.batch, 3, c.height, c.width});
    c10::InferenceMode guard;
    Trace fast, aten;
    {
        KernelsSwitch on(true);
        ASSERT_TRUE(detail::useClusterKernels(input)) << "this LibTorch has no oneDNN: nothing to compare";
        fast = model->forwardTraced(input);
    }
    {
        KernelsSwitch off(false);
        aten = model->forwardTraced(input);
    }
    const auto scale = aten.logits.abs().max().item<float>();
    EXPECT_LT((fast.logits - aten.logits).abs().max().item<float>(), 1e-4 * std::max(1.0f, scale)) << c.name;

    auto compare = [&](const at::Tensor& a, const at::Tensor& b, const at::Tensor& margin, const std::string& what) {
        ASSERT_EQ(a.sizes(), b.sizes()) << what;
        const auto confidentFlips = (a.ne(b) & margin.ge(1e-4)).sum().item<int64_t>();
        EXPECT_EQ(confidentFlips, 0) << c.name << " " << what;
    };
    ASSERT_EQ(fast.pools.size(), aten.pools.size());
    for (size_t i = 0; i < fast.pools.size(); ++i) {
        compare(fast.pools[i].assign, aten.pools[i].assign, aten.pools[i].margin, "pool " + std::to_string(i));
        EXPECT_TRUE(at::allclose(fast.pools[i].similarity, aten.pools[i].similarity, 1e-4, 1e-5));
        EXPECT_TRUE(at::allclose(fast.pools[i].representatives, aten.pools[i].representatives, 1e-4, 1e-4));
    }
    ASSERT_EQ(fast.blocks.size(), aten.blocks.size());
    for (size_t i = 0; i < fast.blocks.size(); ++i) {
        compare(fast.blocks[i].assign, aten.blocks[i].assign, aten.blocks[i].margin, "block " + std::to_string(i));
        EXPECT_TRUE(at::allclose(fast.blocks[i].similarity, aten.blocks[i].similarity, 1e-4, 1e-5));
        EXPECT_TRUE(at::allclose(fast.blocks[i].margin, aten.blocks[i].margin, 1e-3, 1e-4));
    }
    // The plain forward takes the same path as the traced one.
    KernelsSwitch on(true);
    EXPECT_TRUE(at::allclose(model->forward(input), fast.logits, 1e-5, 1e-5)) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Networks, KernelsAgainstAten,
                         ::testing::Values(NetworkCase{"fec_small_224", FecConfig::small(), 1, 224, 224},
                                           NetworkCase{"folded_batch2_non_square", folded(), 2, 128, 96},
                                           NetworkCase{"fashion_128_batch3", fashionLike(), 3, 128, 128}),
                         [](const auto& info) { return std::string(info.param.name); });

// Recording gradients keeps the ATen path (the kernels have no backward) and gives the same result.
TEST(ClusterKernels, GradientRecordingTakesTheAtenPath)
{
    at::manual_seed(6);
    FecModel model(fashionLike());
    model->eval();
    auto input = at::randn({1, 3, 64, 64});
    at::Tensor withoutGrad;
    {
        at::NoGradGuard noGrad;
        withoutGrad = model->forward(input);
    }
    auto leaf = input.clone().requires_grad_(true);
    EXPECT_FALSE(detail::useClusterKernels(leaf));
    auto logits = model->forward(leaf);
    logits.sum().backward();
    ASSERT_TRUE(leaf.grad().defined());
    EXPECT_GT(leaf.grad().abs().sum().item<float>(), 0.0f);
    EXPECT_TRUE(at::allclose(logits.detach(), withoutGrad, 1e-4, 1e-4));
}

}  // namespace
}  // namespace fec
