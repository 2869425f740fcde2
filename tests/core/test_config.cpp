// Architectures, input-size rules and the JSON form stored in our checkpoints.

#include <cmath>
#include <functional>

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

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
    for (const char* key :
         {"patch_embed.proj.weight", "network.0.2.token_mixer.sim_alpha", "network.3.conv_skip.weight",
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

// stateDictShapes() is the schema checkpoints are checked against before a model is built: it
// must list exactly the parameters the model registers.
TEST(Config, StateDictShapesAreTheModelsParameters)
{
    FecConfig dense = FecConfig::small();
    dense.forkFeat = true;
    dense.numClasses = 0;
    FecConfig headless = FecConfig::base();
    headless.numClasses = 0;
    FecConfig custom;
    custom.layers = {1, 0, 2, 1};
    custom.dims = {16, 24, 40, 48};
    custom.heads = {2, 1, 3, 2};
    custom.headDims = {8, 4, 8, 12};
    custom.mlpRatios = {2, 3, 2.5, 4};
    custom.foldW = custom.foldH = {2, 2, 1, 1};
    custom.numClasses = 7;
    custom.inChans = 1;
    for (const auto& c : {FecConfig::small(), FecConfig::base(), FecConfig::large(), dense, headless, custom}) {
        FecModel model(c);
        ShapeMap registered;
        for (const auto& p : model->named_parameters())
            registered[p.key()] = p.value().sizes().vec();
        EXPECT_EQ(stateDictShapes(c), registered) << c.summary();
        EXPECT_EQ(c.parameterCount(), model->parameterCount()) << c.summary();
    }
}

struct BadConfig {
    const char* what;
    std::function<void(FecConfig&)> change;
    const char* message;     // expected in the error: the field, the stage and the value
    bool sameInJson = true;  // JSON has no NaN: nlohmann writes null, refused as "must be a number"
};

// Every architecture value is bounded by one check, run before anything is allocated. These
// used to end in SIGFPE (heads x head_dims wrapping to 0 in an int, an MLP of width 0) or in
// gigabytes of allocation.
TEST(ConfigHostile, EveryArchitectureValueIsBounded)
{
    const BadConfig cases[] = {
        {"heads x head_dims overflows int", [](FecConfig& c) { c.heads[0] = c.headDims[0] = 65536; },
         "heads at stage 0 is 65536, outside 1 to 8192"},
        {"heads x head_dims too wide",
         [](FecConfig& c) {
             c.heads = {2, 2, 2, 2};
             c.headDims = {32768, 24, 24, 24};
         },
         "head_dims at stage 0 is 32768, outside 1 to 8192"},
        {"product over the width bound",
         [](FecConfig& c) {
             c.heads[1] = 128;
             c.headDims[1] = 128;
         },
         "heads x head_dims at stage 1 is 128 x 128 = 16384, more than 8192"},
        {"MLP of width 0", [](FecConfig& c) { c.mlpRatios[2] = 0.001; }, "the MLP width at stage 2"},
        {"NaN MLP ratio", [](FecConfig& c) { c.mlpRatios[3] = std::nan(""); }, "mlp_ratios at stage 3 is nan", false},
        {"proposals", [](FecConfig& c) { c.proposalW[0] = 65536; }, "proposal_w at stage 0 is 65536, outside 1 to 64"},
        {"proposal columns", [](FecConfig& c) { c.proposalH[3] = 0; }, "proposal_h at stage 3 is 0"},
        {"folds", [](FecConfig& c) { c.foldH[1] = 17; }, "fold_h at stage 1 is 17, outside 1 to 16"},
        {"layers", [](FecConfig& c) { c.layers[2] = 65; }, "layers at stage 2 is 65, outside 0 to 64"},
        {"negative layers", [](FecConfig& c) { c.layers[0] = -1; }, "layers at stage 0 is -1"},
        {"widths", [](FecConfig& c) { c.dims[3] = 8193; }, "dims at stage 3 is 8193, outside 1 to 8192"},
        {"classes", [](FecConfig& c) { c.numClasses = 100001; }, "num_classes is 100001, outside 0 to 100000"},
        {"channels", [](FecConfig& c) { c.inChans = 65; }, "in_chans is 65, outside 1 to 64"},
        {"parameters",
         [](FecConfig& c) {
             c.layers = {64, 64, 64, 64};
             c.dims = {4096, 4096, 4096, 4096};
         },
         "parameters, more than 268435456"},
    };
    for (const auto& bad : cases) {
        FecConfig c = FecConfig::small();
        bad.change(c);
        try {
            FecModel model(c);  // validates before registering a single parameter
            ADD_FAILURE() << bad.what << ": accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << bad.what << ": " << e.what();
        }
        // The same values stored as JSON (a checkpoint's fec_config, --config, run.json).
        try {
            FecConfig::fromJson(c.toJson());
            ADD_FAILURE() << bad.what << ": accepted from JSON";
        } catch (const std::invalid_argument& e) {
            EXPECT_EQ(std::string(e.what()).rfind("fec_config: ", 0), 0u) << e.what();
            if (bad.sameInJson)
                EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << bad.what << ": " << e.what();
        }
    }
    // The published variants and the limits themselves are accepted.
    FecConfig edge = FecConfig::small();
    edge.heads[0] = 8;
    edge.headDims[0] = kMaxWidth / 8;
    edge.proposalW = edge.proposalH = {kMaxProposals, 1, 1, 1};
    edge.foldW = edge.foldH = {kMaxFolds, 1, 1, 1};
    EXPECT_NO_THROW(edge.validate());
    for (const auto& name : FecConfig::variantNames())
        EXPECT_NO_THROW(FecConfig::named(name).validate()) << name;
}

TEST(ConfigHostile, JsonIntegersBeyondIntAreNotWrapped)
{
    // 4294967298 used to read as 2 (nlohmann's get<int> truncates).
    auto json = nlohmann::json::parse(FecConfig::small().toJson());
    json["heads"] = {4294967298LL, 4, 8, 8};
    try {
        FecConfig::fromJson(json.dump());
        FAIL() << "4294967298 heads accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("'heads[0]' is 4294967298, out of range"), std::string::npos) << e.what();
    }
    json = nlohmann::json::parse(FecConfig::small().toJson());
    json["num_classes"] = 18446744073709551615ULL;
    EXPECT_THROW(FecConfig::fromJson(json.dump()), std::invalid_argument);
}

TEST(ConfigHostile, InferenceRefusesSizesNoTensorHolds)
{
    FecModel model(FecConfig::small());
    ShapeMap shapes;
    for (const auto& p : model->named_parameters())
        shapes[p.key()] = p.value().sizes().vec();
    // A tensor with a zero dimension holds no data whatever its other sizes claim.
    auto hostile = shapes;
    hostile["network.0.0.token_mixer.f.weight"] = {(int64_t(1) << 32) + 96, 0, 1, 1};
    try {
        inferConfig(hostile);
        FAIL() << "a width of 2^32 + 96 was read as 96";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("network.0.0.token_mixer.f.weight"), std::string::npos) << e.what();
    }
    // Overrides whose product overflows an int are compared in 64 bits.
    ConfigHints hints;
    hints.heads = {65536, 65536, 65536, 65536};
    hints.headDims = {65536, 65536, 65536, 65536};
    try {
        inferConfig(shapes, hints);
        FAIL() << "65536 x 65536 heads accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("heads x head_dim must equal 96"), std::string::npos) << e.what();
    }
}

// The CLI and the explorer turn a device out-of-memory error into advice (smaller batch, CPU).
TEST(Runtime, OutOfMemoryErrorsAreTold)
{
    const c10::Error oom({"f", "file.cpp", 1},
                         "CUDA out of memory. Tried to allocate 64.00 GiB (GPU 0; 79.1 GiB total)");
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
