// Loading every checkpoint layout, saving ours, and the errors users see for bad files.

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "fec/atomic_file.h"
#include "fec/checkpoint.h"
#include "cpu_time.h"
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
        m_path =
            fs::temp_directory_path() / ("fec-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
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
    EXPECT_EQ(info.layout, CheckpointLayout::TimmTraining);
    EXPECT_TRUE(info.hasEma);
    EXPECT_EQ(info.weights, WeightsEntry::StateDictEma);
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
    EXPECT_EQ(loadCheckpoint(referencePath("fec_small_seed0.pth.tar"), raw).info.weights, WeightsEntry::StateDict);
    LoadOptions ema;
    ema.weights = WeightsChoice::Ema;
    EXPECT_NE(errorOf(referencePath("tiny_seed0.pth.tar"), ema).find("no state_dict_ema"), std::string::npos);
}

TEST(Checkpoint, TinyArchitectureIsInferredFromShapes)
{
    auto loaded = loadCheckpoint(referencePath("tiny_seed0.pth.tar"));
    const auto& c = loaded.info.inferred.config;
    EXPECT_EQ(loaded.info.layout, CheckpointLayout::BareStateDict);
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
        EXPECT_EQ(toString(loaded.info.layout), l.expectedLayout);
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

std::string bu(const std::string& s)
{
    std::string out = "X";
    for (int k = 0; k < 4; ++k)
        out += static_cast<char>((s.size() >> (8 * k)) & 0xff);
    return out + s;
}

// A legacy (pre-zip) torch.save file: magic, version, system info, `rootBody` as the data
// pickle, then one float storage "0" of `numel` zeros.
std::string legacyFile(const std::string& rootBody, uint32_t numel = 4)
{
    std::string out("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    out += "\x80\x02M\xe9\x03.";
    out += "\x80\x02}" + bu("little_endian") + "\x88s.";
    out += "\x80\x02" + rootBody + ".";
    out += "\x80\x02](" + bu("0") + "l.";
    for (int k = 0; k < 8; ++k)
        out += static_cast<char>((uint64_t(numel) >> (8 * k)) & 0xff);
    return out + std::string(4 * size_t(numel), '\0');
}

std::string le32(uint32_t v)
{
    std::string out;
    for (int k = 0; k < 4; ++k)
        out += static_cast<char>((v >> (8 * k)) & 0xff);
    return out;
}

// `_rebuild_tensor_v2` of all of storage "0" (numel floats) as a 1-D tensor.
std::string floatTensor(uint32_t numel = 4)
{
    return "ctorch._utils\n_rebuild_tensor_v2\n((" + bu("storage") + "ctorch\nFloatStorage\n" + bu("0") + bu("cpu") +
           "J" + le32(numel) + "NtQJ" + le32(0) + "(J" + le32(numel) + "t(J" + le32(1) + "t\x89}tR";
}

const std::string kFloatTensor = floatTensor();

using test::cpuSecondsOf;
using test::kCpuSlack;

TEST(CheckpointHostile, OneTensorUnderManyKeysIsCopiedOnce)
{
    // 5000 keys naming one memoised 1 MiB tensor: 5 GB if every entry were copied.
    TempDir dir;
    const uint32_t numel = 1 << 18;
    std::string root = "}(" + bu("k0") + floatTensor(numel) + "r" + le32(1);
    for (int i = 1; i < 5000; ++i)
        root += bu("k" + std::to_string(i)) + "j" + le32(1);
    root += "u";
    const auto path = dir.file("shared.pth");
    writeFileAtomic(path, legacyFile(root, numel));
    StateDict dict;
    EXPECT_LT(cpuSecondsOf([&] { dict = readStateDict(path, {}, nullptr); }), 5.0 * kCpuSlack);
    ASSERT_EQ(dict.size(), 5000u);
    EXPECT_EQ(dict.front().second.data_ptr(), dict.back().second.data_ptr());
    EXPECT_EQ(dict.back().second.numel(), numel);

    // The same written as 5000 separate views of one storage is refused by the reader: what
    // the tensors would take is out of all proportion to the file.
    std::map<std::string, pickle::Storage> storages;
    const auto tensor = tensorValue(at::ones({256, 1024}), storages);
    auto sd = Value::dictionary(true);
    for (int i = 0; i < 5000; ++i)
        sd->dict.emplace_back(Value::string("k" + std::to_string(i)), tensor);
    writeFileAtomic(path, pickle::writeTorchZip(*sd, storages, "archive"));
    try {
        readStateDict(path, {}, nullptr);
        FAIL() << "5 GB of views accepted";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("far more than the storages in the file"), std::string::npos) << e.what();
    }
}

TEST(CheckpointHostile, UnsupportedTensorKindsAreNamed)
{
    TempDir dir;
    const auto path = dir.file("quantized.pth");
    const std::string root =
        "}" + bu("w") + kFloatTensor + "s" + bu("q") + "ctorch._utils\n_rebuild_qtensor\n(K\x01tRs";
    writeFileAtomic(path, legacyFile(root));
    try {
        readStateDict(path, {}, nullptr);
        FAIL() << "a quantized tensor was silently dropped";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find(path + ": tensor 'q' is stored as torch._utils._rebuild_qtensor"),
                  std::string::npos)
            << e.what();
    }
    // The same file with only the plain tensor reads.
    writeFileAtomic(path, legacyFile("}" + bu("w") + kFloatTensor + "s"));
    EXPECT_EQ(readStateDict(path, {}, nullptr).at(0).second.numel(), 4);
}

TEST(CheckpointHostile, ArchOfAnyTypeIsOnlyAHint)
{
    TempDir dir;
    const auto weights = tinyWeights();
    for (const auto& arch : {Value::integer(12345), Value::list({Value::integer(1)}), Value::string("fec_tiny?")}) {
        std::map<std::string, pickle::Storage> storages;
        auto sd = Value::dictionary(true);
        for (const auto& [k, t] : weights)
            sd->set(k, tensorValue(t, storages));
        auto root = Value::dictionary();
        root->set("state_dict", sd);
        root->set("arch", arch);
        const auto path = dir.file("arch.pth");
        writeFileAtomic(path, pickle::writeTorchZip(*root, storages, "archive"));
        try {
            loadCheckpoint(path);
        } catch (const CheckpointError& e) {
            // An unknown name may be refused, but only as a checkpoint error naming the file.
            EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        } catch (const std::exception& e) {
            ADD_FAILURE() << arch->describe() << ": escaped as another exception: " << e.what();
        }
    }
}

TEST(CheckpointHostile, RepeatedPrefixesAreStrippedInLinearTime)
{
    // One key of 200000 "module." prefixes: each pass used to copy the whole key again.
    TempDir dir;
    std::string key;
    for (int i = 0; i < 200000; ++i)
        key += "module.";
    writeStateDictFile(dir.file("prefixes.pth"), {{key + "w", at::ones({2})}});
    CheckpointInfo info;
    StateDict dict;
    EXPECT_LT(cpuSecondsOf([&] { dict = readStateDict(dir.file("prefixes.pth"), {}, &info); }), 2.0 * kCpuSlack);
    ASSERT_EQ(dict.size(), 1u);
    EXPECT_EQ(dict[0].first, "w");
    EXPECT_LE(info.strippedPrefix.size(), 256u + 16u);
}

TEST(CheckpointHostile, DamagedCheckpointsOnlyEverThrowCheckpointError)
{
    TempDir dir;
    const auto original = readFileBytes(referencePath("tiny_seed0.pth.tar"));
    std::mt19937 rng(2024);
    int loaded = 0, refused = 0;
    for (int round = 0; round < 120; ++round) {
        auto bytes = original;
        for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) {
            // Mostly in the pickle, where a flip changes shapes, keys and types rather than data.
            const size_t at = rng() % 3 ? 64 + rng() % 16000 : rng() % bytes.size();
            bytes[at] = static_cast<uint8_t>(rng());
        }
        // Zero the CRC fields so that pickle changes reach the checkpoint layer.
        for (size_t i = 0; i + 46 < bytes.size(); ++i)
            if (bytes[i] == 'P' && bytes[i + 1] == 'K' && bytes[i + 2] == 1 && bytes[i + 3] == 2)
                std::memset(&bytes[i + 16], 0, 4);
        const auto path = dir.file("mutated.pth");
        writeFileAtomic(path, bytes);
        try {
            loadCheckpoint(path);
            ++loaded;
        } catch (const CheckpointError& e) {
            ++refused;
            EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "round " << round << ": " << e.what();
        }
    }
    std::cout << "damaged checkpoints: " << loaded << " loaded, " << refused << " refused\n";
    EXPECT_GT(refused, 10);
}

// Hardening round 2.

// A training checkpoint {"state_dict": {"w": 4 floats}, "args": Namespace(<fields>)}, where
// `fields` is the pickle of key/value pairs.
std::string trainingRootWithArgs(const std::string& fields)
{
    return "}(" + bu("state_dict") + "}" + bu("w") + kFloatTensor + "s" + bu("args") + "cargparse\nNamespace\n)\x81}(" +
           fields + "ubu";
}

TEST(CheckpointHostile, SharedReferencesInArgsAreBounded)
{
    TempDir dir;
    const auto path = dir.file("args.pth");
    // args.big: one 4 KiB string referenced 2^18 times through the memo (a 1.3 MB file): 1 GB of
    // JSON once expanded, 20 s and 2.35 GB in `fec inspect` before the fix.
    std::string flat = bu("big") + "(" + bu(std::string(4096, 'a')) + "r" + le32(0);
    for (int i = 1; i < (1 << 18); ++i)
        flat += "j" + le32(0);
    writeFileAtomic(path, legacyFile(trainingRootWithArgs(flat + "l")));
    CheckpointInfo info;
    std::string error;
    auto read = [&] {
        info = {};
        error.clear();
        try {
            readStateDict(path, {}, &info);
        } catch (const CheckpointError& e) {
            error = e.what();
        }
    };
    EXPECT_LT(cpuSecondsOf(read), 2.0 * kCpuSlack);
    if (error.empty())
        EXPECT_LT(info.argsJson.size(), 2u << 20);
    else
        EXPECT_EQ(error.rfind(path + ": the training arguments ('args') are not read", 0), 0u) << error;

    // Five levels of lists holding the previous one 64 times, a 4 KiB string at the bottom: 68 GB
    // once expanded (std::bad_alloc before). Each list and long string is shown once.
    std::string nested = bu("model") + bu("fec_tiny") + "r" + le32(9) + bu("arch") + "j" + le32(9) + bu("levels") +
                         bu(std::string(4096, 'b')) + "r" + le32(1) + "0";
    for (uint32_t level = 2; level <= 5; ++level) {
        nested += "(";
        for (int k = 0; k < 64; ++k)
            nested += "j" + le32(level - 1);
        nested += "l" + std::string(level < 5 ? "r" + le32(level) + "0" : "");
    }
    writeFileAtomic(path, legacyFile(trainingRootWithArgs(nested)));
    EXPECT_LT(cpuSecondsOf(read), 2.0 * kCpuSlack);
    ASSERT_EQ(error, "");
    EXPECT_LT(info.argsJson.size(), 64u << 10);
    const auto args = nlohmann::json::parse(info.argsJson);
    // Short shared strings are shown where they are used.
    EXPECT_EQ(args["model"], "fec_tiny");
    EXPECT_EQ(args["arch"], "fec_tiny");
    ASSERT_EQ(args["levels"].size(), 64u);
    EXPECT_EQ(args["levels"][0][0][0][0], std::string(4096, 'b'));
    EXPECT_EQ(args["levels"][0][0][0][1], "<shared, shown earlier>");
    EXPECT_EQ(args["levels"][63], "<shared, shown earlier>");
}

TEST(CheckpointHostile, NestedPickleIsNamedForWhatItIs)
{
    TempDir dir;
    const auto path = dir.file("nested.pth");
    const std::string root =
        "}" + bu("w") + kFloatTensor + "s" + bu("q") + "ctorch.storage\n_load_from_bytes\n(C\x04" + "abcd" + "tRs";
    writeFileAtomic(path, legacyFile(root));
    try {
        readStateDict(path, {}, nullptr);
        FAIL() << "a nested pickle was accepted";
    } catch (const CheckpointError& e) {
        const std::string message = e.what();
        EXPECT_EQ(
            message.rfind(path + ": tensor 'q' is a nested pickle (torch.storage._load_from_bytes), not loaded", 0), 0u)
            << message;
        EXPECT_EQ(message.find("quantized"), std::string::npos) << message;
    }
}

TEST(CheckpointHostile, LegacyHeaderGlobalsReachTheReport)
{
    // The fixture with a call hidden in its protocol-version pickle, which torch.load runs.
    TempDir dir;
    const auto original = readFileBytes(referencePath("tiny_seed0_legacy.pth"));
    const std::string version("\x80\x02M\xe9\x03.", 6);
    ASSERT_EQ(std::string(original.begin() + 15, original.begin() + 21), version);
    const std::string hostile = "\x80\x02"
                                "cposix\nsystem\n(" +
                                bu("id") + "tR0" + version.substr(2);
    std::vector<uint8_t> bytes(original.begin(), original.begin() + 15);
    bytes.insert(bytes.end(), hostile.begin(), hostile.end());
    bytes.insert(bytes.end(), original.begin() + 21, original.end());
    const auto path = dir.file("header.pth");
    writeFileAtomic(path, bytes);
    EXPECT_TRUE(loadCheckpoint(referencePath("tiny_seed0_legacy.pth")).info.ignoredGlobals.empty());
    const auto loaded = loadCheckpoint(path);
    EXPECT_EQ(loaded.info.ignoredGlobals, std::vector<std::string>{"posix.system"});
}

// The tiny reference model saved as our own checkpoint, with top-level entries replaced
// (fec_config, input_size) the way a hostile or damaged file would have them.
void saveTinyWith(const std::string& path, std::vector<std::pair<std::string, pickle::ValuePtr>> entries)
{
    auto model = loadCheckpoint(referencePath("tiny_seed0.pth.tar")).model;
    SaveOptions options;
    options.extra = std::move(entries);
    saveCheckpoint(path, *model, options);
}

FecConfig tinyConfig()
{
    return loadCheckpoint(referencePath("tiny_seed0.pth.tar")).info.inferred.config;
}

long peakRssMiB()
{
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024;
}

TEST(CheckpointHostile, StoredArchitectureIsBoundedAndMustDescribeTheWeights)
{
    TempDir dir;
    struct Case {
        const char* what;
        std::function<void(FecConfig&)> change;
        const char* message;
    };
    const Case cases[] = {
        // heads x head_dims = 2^32 wrapped to 0 in an int: the constructor divided by zero (SIGFPE).
        {"65536 x 65536 heads",
         [](FecConfig& c) {
             c.heads = c.headDims = {65536, 65536, 65536, 65536};
         },
         ": fec_config: invalid architecture: heads at stage 0 is 65536, outside 1 to 8192"},
        {"2 x 32768 heads",
         [](FecConfig& c) {
             c.heads = {2, 2, 2, 2};
             c.headDims = {32768, 32768, 32768, 32768};
         },
         ": fec_config: invalid architecture: head_dims at stage 0 is 32768, outside 1 to 8192"},
        {"65536 proposals",
         [](FecConfig& c) {
             c.proposalW = c.proposalH = {65536, 4, 2, 2};
         },
         ": fec_config: invalid architecture: proposal_w at stage 0 is 65536, outside 1 to 64"},
        // Within the bounds, but not these weights: refused naming the key and both shapes.
        {"heads contradict the weights",
         [](FecConfig& c) {
             c.headDims = {64, 8, 8, 8};
         },
         "contradicts the weights: shape mismatch: network.0.0.token_mixer.f.bias (expected [128], found [16]), "
         "network.0.0.token_mixer.f.weight (expected [128, 16, 1, 1], found [16, 16, 1, 1])"},
        {"layers contradict the weights",
         [](FecConfig& c) {
             c.layers = {2, 1, 1, 1};
         },
         "contradicts the weights: missing keys: network.0.1.layer_scale_1"},
        {"classes contradict the weights", [](FecConfig& c) { c.numClasses = 1000; },
         "contradicts the weights: shape mismatch: head.bias (expected [1000], found [10]), head.weight (expected "
         "[1000, 64], found [10, 64])"},
    };
    const long before = peakRssMiB();
    for (const auto& bad : cases) {
        FecConfig c = tinyConfig();
        bad.change(c);
        const auto path = dir.file("stored.pth.tar");
        saveTinyWith(path, {{"fec_config", Value::string(c.toJson())}});
        const auto message = errorOf(path);
        EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << bad.what << ": " << message;
        EXPECT_NE(message.find(bad.message), std::string::npos) << bad.what << ": " << message;
    }
    // Nothing was allocated for the architectures refused (the 2 x 32768 one alone took gigabytes).
    EXPECT_LT(peakRssMiB() - before, 256);

    // heads x head_dims is all the weights show: another split of the same widths loads as stored.
    FecConfig split = tinyConfig();
    split.heads = {4, 1, 2, 8};
    split.headDims = {4, 16, 8, 2};
    const auto path = dir.file("split.pth.tar");
    saveTinyWith(path, {{"fec_config", Value::string(split.toJson())}});
    auto loaded = loadCheckpoint(path);
    EXPECT_TRUE(loaded.info.configStored);
    EXPECT_EQ(loaded.info.inferred.config.heads, split.heads);

    // The user's --heads settle a stored split that contradicts the weights.
    FecConfig wrong = tinyConfig();
    wrong.headDims = {64, 8, 8, 8};
    saveTinyWith(path, {{"fec_config", Value::string(wrong.toJson())}});
    LoadOptions options;
    options.hints.heads = {2, 2, 2, 2};
    loaded = loadCheckpoint(path, options);
    EXPECT_EQ(loaded.info.inferred.config.headDims, (StageInts{8, 8, 8, 8}));
}

TEST(CheckpointHostile, AbsurdInputSizeIsRefusedWithItsLimit)
{
    TempDir dir;
    const auto path = dir.file("size.pth.tar");
    const struct {
        int64_t size;
        const char* message;
    } cases[] = {
        {8192, ": input_size 8192 is outside 32 to 4096"},                            // 16 s and 3.8 GB for each image
        {(int64_t(1) << 32) + 224, ": input_size 4294967520 is outside 32 to 4096"},  // not read as 224
        {-224, ": input_size -224 is outside 32 to 4096"},
        {100, ": input_size 100: input size 100x100 is not supported by this model"},
    };
    for (const auto& c : cases) {
        saveTinyWith(path, {{"input_size", Value::integer(c.size)}});
        const auto message = errorOf(path);
        EXPECT_EQ(message.rfind(path + c.message, 0), 0u) << message;
    }
    saveTinyWith(path, {{"input_size", Value::integer(kMaxInputSide)}});
    EXPECT_EQ(loadCheckpoint(path).info.inputSize, kMaxInputSide);
}

TEST(CheckpointHostile, NonFiniteWeightsAreReportedNotRefused)
{
    TempDir dir;
    auto weights = tinyWeights();
    for (auto& [key, t] : weights) {
        if (key == "head.weight") {
            t = t.clone();
            t.view(-1).slice(0, 0, 3).fill_(std::numeric_limits<float>::quiet_NaN());
        } else if (key == "network.2.0.mlp.fc1.bias") {
            t = t.to(at::kHalf);  // NaN and infinity are found in every float type
            t[5] = std::numeric_limits<float>::infinity();
        }
    }
    const auto path = dir.file("nan.pth");
    writeStateDictFile(path, weights);
    auto loaded = loadCheckpoint(path);
    auto report = loaded.info.nonFiniteTensors;
    std::sort(report.begin(), report.end());
    EXPECT_EQ(report,
              (std::vector<std::pair<std::string, int64_t>>{{"head.weight", 3}, {"network.2.0.mlp.fc1.bias", 1}}));
    // The keys are those of the model (prefixes removed) and a healthy file reports nothing.
    writeStateDictFile(path, weights, "module.");
    EXPECT_EQ(loadCheckpoint(path).info.nonFiniteTensors.size(), 2u);
    EXPECT_TRUE(loadCheckpoint(referencePath("tiny_seed0.pth.tar")).info.nonFiniteTensors.empty());
}

}  // namespace
}  // namespace fec
