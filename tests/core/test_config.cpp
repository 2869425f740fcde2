// Architectures, input-size rules and the JSON form stored in our checkpoints.

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include "fec/config.h"
#include "fec/model.h"
#include "fec/runtime.h"

namespace fec {
namespace {

TEST(Config, PublishedVariantsHaveThePublishedSizes)
{
    EXPECT_EQ(FecModel(FecConfig::small())->parameterCount(), 5727528);
    // The paper's 14.4 M / 28.3 M are counted like the official fec.py prints them (/1024^2).
    const double base = FecModel(FecConfig::base())->parameterCount() / 1048576.0;
    const double large = FecModel(FecConfig::large())->parameterCount() / 1048576.0;
    EXPECT_NEAR(base, 14.4, 0.3);
    EXPECT_NEAR(large, 28.3, 0.5);
}

TEST(Config, RegisteredNamesAreThePyTorchKeys)
{
    FecModel model(FecConfig::small());
    auto params = model->named_parameters();
    for (const char* key : {"patch_embed.proj.weight", "network.0.2.token_mixer.sim_alpha", "network.3.conv_skip.weight",
                            "network.4.4.mlp.fc2.bias", "network.6.1.layer_scale_2", "norm.weight", "head.bias"})
        EXPECT_NE(params.find(key), nullptr) << key;
    EXPECT_EQ(params.size(), 282u);
}

TEST(Config, JsonRoundTrip)
{
    FecConfig c = FecConfig::large();
    c.proposalW = {7, 7, 7, 7};
    c.proposalH = {7, 7, 7, 7};
    c.foldW = {2, 2, 1, 1};
    c.foldH = {2, 2, 1, 1};
    c.mlpRatios = {8, 8, 4, 2.5};
    EXPECT_EQ(FecConfig::fromJson(c.toJson()), c);
    EXPECT_THROW(FecConfig::fromJson("{\"layers\": [1,2]}"), std::invalid_argument);
    EXPECT_THROW(FecConfig::fromJson("not json"), std::invalid_argument);
}

TEST(Config, InputSizesMustBeMultiplesOf32)
{
    const auto c = FecConfig::small();
    EXPECT_NO_THROW(c.checkInputSize(224, 224));
    EXPECT_NO_THROW(c.checkInputSize(256, 320));
    try {
        c.checkInputSize(200, 224);
        FAIL() << "200x224 accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("multiples of 32"), std::string::npos) << e.what();
    }
    EXPECT_THROW(c.checkInputSize(16, 16), std::invalid_argument);
}

TEST(Config, NonSquareAndFoldedModelsRun)
{
    FecConfig c = FecConfig::small();
    c.layers = {1, 1, 1, 1};
    c.proposalW = c.proposalH = {7, 7, 7, 7};
    c.foldW = c.foldH = {2, 2, 1, 1};
    c.numClasses = 5;
    FecModel model(c);
    model->eval();
    c10::InferenceMode guard;
    auto trace = model->forwardTraced(at::randn({2, 3, 128, 192}));
    EXPECT_EQ(trace.logits.sizes(), (std::vector<int64_t>{2, 5}));
    // Pool 1 maps 32x48 positions to a 16x24 grid; every centre id is on that grid.
    ASSERT_EQ(trace.pools.size(), 3u);
    EXPECT_EQ(trace.pools[0].assign.sizes(), (std::vector<int64_t>{2, 32 * 48}));
    EXPECT_GE(trace.pools[0].assign.min().item<int64_t>(), 0);
    EXPECT_LT(trace.pools[0].assign.max().item<int64_t>(), 16 * 24);
    // With 2x2 folds a position can only join a centre of its own region.
    auto assign = trace.pools[0].assign[0];
    for (int64_t n = 0; n < 32 * 48; n += 37) {
        const int64_t row = n / 48, col = n % 48;
        const int64_t centre = assign[n].item<int64_t>();
        EXPECT_EQ(row / 16, (centre / 24) / 8) << n;
        EXPECT_EQ(col / 24, (centre % 24) / 12) << n;
    }
    // Stage 0 folded blocks: 4 regions x 49 proposals.
    EXPECT_LT(trace.blocks[0].assign.max().item<int64_t>(), 4 * 49);
}

TEST(Config, InferenceMatchesPublishedVariantsFromShapes)
{
    for (const auto& name : FecConfig::variantNames()) {
        FecModel model(FecConfig::named(name));
        ShapeMap shapes;
        for (const auto& p : model->named_parameters())
            shapes[p.key()] = p.value().sizes().vec();
        auto inferred = inferConfig(shapes);
        EXPECT_EQ(inferred.config, FecConfig::named(name)) << name;
        EXPECT_EQ(inferred.config.variant, name);
        EXPECT_FALSE(inferred.headsGuessed);
    }
}

TEST(Config, NotAnFecStateDict)
{
    ShapeMap shapes{{"conv1.weight", {64, 3, 7, 7}}};
    EXPECT_THROW(inferConfig(shapes), std::invalid_argument);
}

// The CLI and the explorer turn a device out-of-memory error into advice (smaller batch, CPU).
TEST(Runtime, OutOfMemoryErrorsAreTold)
{
    const c10::Error oom({"f", "file.cpp", 1}, "CUDA out of memory. Tried to allocate 64.00 GiB (GPU 0; 79.1 GiB total)");
    const c10::Error other({"f", "file.cpp", 1}, "shape mismatch");
    EXPECT_TRUE(isOutOfMemory(oom));
    EXPECT_FALSE(isOutOfMemory(other));
    EXPECT_FALSE(isOutOfMemory(std::runtime_error("disk full")));
    releaseCachedDeviceMemory();  // harmless without CUDA
    if (!cudaAvailable())
        EXPECT_EQ(deviceMemoryReserved(0), 0u);
}

// What `fec` and the explorer's status bar print for the CPU, in the user's thread count.
TEST(Runtime, DescribesTheCpuWithItsThreads)
{
    const int before = at::get_num_threads();
    at::set_num_threads(1);
    EXPECT_EQ(describeDevice(c10::Device(c10::kCPU)), "cpu (1 thread)");
    at::set_num_threads(2);
    EXPECT_EQ(describeDevice(c10::Device(c10::kCPU)), "cpu (2 threads)");
    at::set_num_threads(before);
}

}  // namespace
}  // namespace fec
