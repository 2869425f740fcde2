// Loading every checkpoint layout, saving ours, and the errors users see for bad files.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "fec/atomic_file.h"
#include "fec/checkpoint.h"
#include "reference.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

using pickle::Value;
using test::referencePath;

class TempDir {
public:
    TempDir()
    {
        m_path = fs::temp_directory_path() / ("fec-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        fs::create_directories(m_path);
    }
    ~TempDir() { fs::remove_all(m_path); }
    std::string file(const std::string& name) const { return (m_path / name).string(); }

private:
    static int& counter()
    {
        static int c = 0;
        return c;
    }
    fs::path m_path;
};

// Writes a torch.save-style zip whose top level is `root` built from `dict` entries.
void writeStateDictFile(const std::string& path, const StateDict& dict, const std::string& prefix = "",
                        const std::string& wrapper = "")
{
    std::map<std::string, pickle::Storage> storages;
    auto sd = Value::dictionary(true);
    for (const auto& [k, t] : dict)
        sd->set(prefix + k, tensorValue(t, storages));
    auto root = sd;
    if (!wrapper.empty()) {
        root = Value::dictionary();
        root->set(wrapper, sd);
        root->set("epoch", Value::integer(3));
    }
    writeFileAtomic(path, pickle::writeTorchZip(*root, storages, "archive"));
}

std::string errorOf(const std::string& path, const LoadOptions& options = {})
{
    try {
        loadCheckpoint(path, options);
    } catch (const CheckpointError& e) {
        return e.what();
    }
    return "";
}

StateDict tinyWeights()
{
    return readStateDict(referencePath("tiny_seed0.pth.tar"), {}, nullptr);
}

TEST(Checkpoint, TimmCheckpointIsDescribed)
{
    auto loaded = loadCheckpoint(referencePath("fec_small_seed0.pth.tar"));
    const auto& info = loaded.info;
    EXPECT_EQ(info.container, "zip");
    EXPECT_EQ(info.layout, "timm training checkpoint");
    EXPECT_TRUE(info.hasEma);
    EXPECT_EQ(info.weights, "state_dict_ema");
    EXPECT_EQ(info.inferred.config.variant, "fec_small");
    EXPECT_EQ(info.inferred.config, FecConfig::small());
    EXPECT_EQ(info.parameterCount, 5727528);
    EXPECT_FALSE(info.argsJson.empty());
    EXPECT_NE(info.argsJson.find("\"model\":\"fec_small\""), std::string::npos);
    bool sawEpoch = false, sawMetric = false;
    for (const auto& [k, v] : info.extras) {
        sawEpoch |= k == "epoch" && v == "299";
        sawMetric |= k == "metric" && v.rfind("72.7", 0) == 0;
    }
    EXPECT_TRUE(sawEpoch);
    EXPECT_TRUE(sawMetric);
    // argparse.Namespace is read as an inert value, never constructed.
    EXPECT_NE(std::find(info.ignoredGlobals.begin(), info.ignoredGlobals.end(), "argparse.Namespace"),
              info.ignoredGlobals.end());
}

TEST(Checkpoint, WeightsChoiceIsHonoured)
{
    LoadOptions raw;
    raw.weights = WeightsChoice::StateDict;
    EXPECT_EQ(loadCheckpoint(referencePath("fec_small_seed0.pth.tar"), raw).info.weights, "state_dict");
    LoadOptions ema;
    ema.weights = WeightsChoice::Ema;
    EXPECT_NE(errorOf(referencePath("tiny_seed0.pth.tar"), ema).find("no state_dict_ema"), std::string::npos);
}

TEST(Checkpoint, TinyArchitectureIsInferredFromShapes)
{
    auto loaded = loadCheckpoint(referencePath("tiny_seed0.pth.tar"));
    const auto& c = loaded.info.inferred.config;
    EXPECT_EQ(loaded.info.layout, "bare state_dict");
    EXPECT_EQ(c.layers, (StageInts{1, 1, 1, 1}));
    EXPECT_EQ(c.dims, (StageInts{16, 32, 48, 64}));
    EXPECT_EQ(c.heads, (StageInts{2, 2, 2, 2}));
    EXPECT_EQ(c.headDims, (StageInts{8, 8, 8, 8}));
    EXPECT_EQ(c.numClasses, 10);
    EXPECT_EQ(loaded.info.parameterCount, 99250);
}

TEST(Checkpoint, LegacyAndZipHoldTheSameTensors)
{
    auto zip = readStateDict(referencePath("tiny_seed0.pth.tar"), {}, nullptr);
    CheckpointInfo info;
    auto legacy = readStateDict(referencePath("tiny_seed0_legacy.pth"), {}, &info);
    EXPECT_EQ(info.container, "legacy");
    ASSERT_EQ(zip.size(), legacy.size());
    for (size_t i = 0; i < zip.size(); ++i) {
        EXPECT_EQ(zip[i].first, legacy[i].first);
        EXPECT_TRUE(zip[i].second.equal(legacy[i].second)) << zip[i].first;
    }
}

TEST(Checkpoint, WrappersArePeeledOff)
{
    TempDir dir;
    const auto weights = tinyWeights();
    struct Layout {
        std::string prefix, wrapper, expectedLayout, expectedPrefix;
    };
    for (const auto& l : {Layout{"module.", "", "bare state_dict", "module."},
                          Layout{"", "model", "checkpoint with a 'model' entry", ""},
                          Layout{"module.", "state_dict", "timm training checkpoint", "module."},
                          Layout{"_orig_mod.", "", "bare state_dict", "_orig_mod."}}) {
        const auto path = dir.file("wrapped.pth");
        writeStateDictFile(path, weights, l.prefix, l.wrapper);
        auto loaded = loadCheckpoint(path);
        EXPECT_EQ(loaded.info.layout, l.expectedLayout);
        EXPECT_EQ(loaded.info.strippedPrefix, l.expectedPrefix);
        EXPECT_EQ(loaded.info.parameterCount, 99250);
    }
}

TEST(Checkpoint, DenseBackboneWithDecodeHeadLoadsTheBackbone)
{
    TempDir dir;
    FecConfig config = FecConfig::named("fec_small");
    config.layers = {1, 1, 1, 1};
    config.forkFeat = true;
    config.numClasses = 0;
    FecModel backbone(config);
    StateDict dict = stateDictOf(*backbone);
    dict.emplace_back("decode_head.conv_seg.weight", at::zeros({150, 64, 1, 1}));
    std::map<std::string, pickle::Storage> storages;
    auto sd = Value::dictionary(true);
    for (const auto& [k, t] : dict)
        sd->set(k.rfind("decode_head", 0) == 0 ? k : "backbone." + k, tensorValue(t, storages));
    auto root = Value::dictionary();
    root->set("state_dict", sd);
    const auto path = dir.file("segmentor.pth");
    writeFileAtomic(path, pickle::writeTorchZip(*root, storages));

    auto loaded = loadCheckpoint(path);
    EXPECT_TRUE(loaded.info.inferred.config.forkFeat);
    EXPECT_EQ(loaded.info.skippedKeys, 1);
    EXPECT_EQ(loaded.info.inferred.config.proposalW, (StageInts{10, 10, 5, 5}));
    c10::InferenceMode guard;
    auto trace = loaded.model->forwardTraced(at::randn({1, 3, 64, 64}));
    ASSERT_EQ(trace.denseFeatures.size(), 4u);
    EXPECT_EQ(trace.denseFeatures[3].sizes(), (std::vector<int64_t>{1, 320, 2, 2}));
}

TEST(Checkpoint, SaveThenLoadIsBitIdentical)
{
    TempDir dir;
    auto original = loadCheckpoint(referencePath("fec_small_seed0.pth.tar"));
    SaveOptions save;
    save.epoch = 7;
    save.classNames = {"a", "b"};
    save.inputSize = 128;
    save.preprocess = "squash";
    const auto path = dir.file("ours.pth.tar");
    saveCheckpoint(path, *original.model, save);

    auto again = loadCheckpoint(path);
    EXPECT_TRUE(again.info.configStored);
    EXPECT_EQ(again.info.inferred.config, original.info.inferred.config);
    EXPECT_EQ(again.info.inputSize, 128);
    EXPECT_EQ(again.info.preprocess, "squash");
    EXPECT_EQ(again.info.classNames, (std::vector<std::string>{"a", "b"}));
    auto a = stateDictOf(*original.model);
    auto b = stateDictOf(*again.model);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].first, b[i].first);
        EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
    }
    // A second save of the reloaded model (same file name elsewhere) produces the same bytes.
    TempDir other;
    const auto path2 = other.file("ours.pth.tar");
    saveCheckpoint(path2, *again.model, save);
    EXPECT_TRUE(readFileBytes(path) == readFileBytes(path2));
}

TEST(Checkpoint, MissingFileNamesTheFile)
{
    const auto message = errorOf("/nonexistent/model.pth");
    EXPECT_NE(message.find("/nonexistent/model.pth"), std::string::npos) << message;
}

TEST(Checkpoint, NotACheckpoint)
{
    TempDir dir;
    const auto path = dir.file("notes.pth");
    writeFileAtomic(path, std::string("these are not weights\n"));
    const auto message = errorOf(path);
    EXPECT_NE(message.find(path), std::string::npos);
    EXPECT_NE(message.find("not a PyTorch checkpoint"), std::string::npos) << message;
}

TEST(Checkpoint, TruncatedFileIsReported)
{
    TempDir dir;
    auto bytes = readFileBytes(referencePath("tiny_seed0.pth.tar"));
    for (size_t cut : {bytes.size() / 3, bytes.size() - 100, size_t(200)}) {
        const auto path = dir.file("cut.pth");
        writeFileAtomic(path, bytes.data(), cut);
        const auto message = errorOf(path);
        EXPECT_FALSE(message.empty()) << "cut at " << cut;
        EXPECT_NE(message.find(path), std::string::npos) << message;
    }
}

TEST(Checkpoint, ForeignStateDictListsUnexpectedKeys)
{
    TempDir dir;
    const auto path = dir.file("resnet.pth");
    writeStateDictFile(path, {{"conv1.weight", at::zeros({64, 3, 7, 7})}, {"fc.weight", at::zeros({1000, 512})}});
    const auto message = errorOf(path);
    EXPECT_NE(message.find("patch_embed.proj.weight"), std::string::npos) << message;
}

TEST(Checkpoint, MissingKeyIsNamed)
{
    TempDir dir;
    auto weights = tinyWeights();
    weights.erase(std::remove_if(weights.begin(), weights.end(),
                                 [](const auto& kv) { return kv.first == "network.3.conv_skip.bias"; }),
                  weights.end());
    const auto path = dir.file("missing.pth");
    writeStateDictFile(path, weights);
    const auto message = errorOf(path);
    EXPECT_NE(message.find("missing keys: network.3.conv_skip.bias"), std::string::npos) << message;
}

TEST(Checkpoint, ShapeMismatchNamesKeyAndShapes)
{
    TempDir dir;
    auto weights = tinyWeights();
    for (auto& [k, t] : weights)
        if (k == "network.2.0.mlp.fc2.bias")
            t = at::zeros({31});
    const auto path = dir.file("mismatch.pth");
    writeStateDictFile(path, weights);
    const auto message = errorOf(path);
    EXPECT_NE(message.find("network.2.0.mlp.fc2.bias (expected [32], found [31])"), std::string::npos) << message;
}

TEST(Checkpoint, HalfPrecisionWeightsAreConverted)
{
    TempDir dir;
    auto weights = tinyWeights();
    for (auto& [k, t] : weights)
        t = t.to(at::kHalf);
    const auto path = dir.file("half.pth");
    writeStateDictFile(path, weights);
    auto loaded = loadCheckpoint(path);
    auto params = loaded.model->named_parameters();
    EXPECT_EQ(params["patch_embed.proj.weight"].scalar_type(), at::kFloat);
}

TEST(Checkpoint, HeadsOverrideMustFitTheWeights)
{
    LoadOptions options;
    options.hints.heads = {3, 3, 3, 3};
    const auto message = errorOf(referencePath("tiny_seed0.pth.tar"), options);
    EXPECT_NE(message.find("heads x head_dim must equal 16"), std::string::npos) << message;
}

}  // namespace
}  // namespace fec
