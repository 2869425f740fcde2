#include "fec/cli/cli.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "fec/atomic_file.h"
#include "fec/bench.h"
#include "fec/checkpoint.h"
#include "fec/runtime.h"
#include "fec/tensor_io.h"
#ifdef FEC_WITH_IMAGING
#include "fec/imaging/image.h"
#endif
#include "commands.h"

namespace fs = std::filesystem;

namespace fec::cli {

std::vector<int> parseIntList(const std::string& text, const char* what)
{
    std::vector<int> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        try {
            size_t used = 0;
            int v = std::stoi(item, &used);
            if (used != item.size())
                throw std::invalid_argument("");
            out.push_back(v);
        } catch (const std::exception&) {
            throw std::invalid_argument(std::string(what) + ": '" + item + "' is not an integer");
        }
    }
    return out;
}

namespace {

std::string executableDir()
{
    std::error_code ec;
    auto exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : exe.parent_path().string();
}

}  // namespace

std::string resourceDir()
{
    if (const char* env = std::getenv("FEC_RESOURCES_DIR"))
        return env;
    const auto exeDir = executableDir();
    for (const auto& candidate : {fs::path(exeDir) / ".." / "share" / "fec-explorer", fs::path(FEC_SOURCE_RESOURCES)}) {
        std::error_code ec;
        if (fs::exists(candidate / "labels" / "imagenet1k.txt", ec))
            return fs::weakly_canonical(candidate, ec).string();
    }
    return FEC_SOURCE_RESOURCES;
}

std::string defaultModelPath()
{
    const fs::path resources = resourceDir();
    for (const auto& dir : {resources / "models", resources / ".." / "models"}) {
        std::error_code ec;
        std::vector<std::string> found;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const auto name = it->path().filename().string();
            if (name.size() > 8 && name.compare(name.size() - 8, 8, ".pth.tar") == 0 && it->is_regular_file(ec))
                found.push_back(it->path().string());
        }
        if (!found.empty()) {
            std::sort(found.begin(), found.end());
            return fs::weakly_canonical(found.front(), ec).string();
        }
    }
    return {};
}

std::vector<std::string> classNamesFor(int numClasses, const std::vector<std::string>& stored,
                                       const std::string& labels)
{
    auto readLines = [](const std::string& path) {
        std::ifstream in(path);
        if (!in)
            throw std::runtime_error("cannot read labels file " + path);
        std::vector<std::string> lines;
        for (std::string line; std::getline(in, line);)
            if (!line.empty())
                lines.push_back(line);
        return lines;
    };
    std::vector<std::string> names;
    if (!labels.empty()) {
        std::string path = labels;
        if (labels == "imagenet1k" || labels == "fashion-mnist")
            path = resourceDir() + "/labels/" + (labels == "imagenet1k" ? "imagenet1k.txt" : "fashion_mnist.txt");
        names = readLines(path);
        if (static_cast<int>(names.size()) != numClasses)
            throw std::runtime_error("labels file " + path + " has " + std::to_string(names.size()) +
                                     " names but the model has " + std::to_string(numClasses) + " classes");
    } else if (static_cast<int>(stored.size()) == numClasses) {
        names = stored;
    } else if (numClasses == 1000) {
        names = readLines(resourceDir() + "/labels/imagenet1k.txt");
    }
    if (static_cast<int>(names.size()) != numClasses) {
        names.clear();
        for (int i = 0; i < numClasses; ++i)
            names.push_back("class " + std::to_string(i));
    }
    return names;
}

void addModelOptions(CLI::App& cmd, ModelOptions& o, bool requireCheckpoint)
{
    auto* ck = cmd.add_option("--checkpoint,-c", o.checkpoint, "FEC checkpoint (.pth, .pth.tar, .pt)");
    if (requireCheckpoint) {
        // Without --checkpoint the shipped default model is used (shown in --help).
        o.checkpoint = defaultModelPath();
        if (o.checkpoint.empty())
            ck->required();
        else
            ck->capture_default_str();
    }
    cmd.add_option("--weights", o.weights, "auto (EMA when present), state_dict or ema")
        ->check(CLI::IsMember({"auto", "state_dict", "ema"}));
    cmd.add_option("--device", o.device, "auto, cpu or cuda");
    cmd.add_option("--heads", o.heads, "override heads per stage, e.g. 4,4,8,8");
    cmd.add_option("--head-dims", o.headDims, "override head widths per stage, e.g. 24,24,24,24");
    cmd.add_option("--proposals", o.proposals, "override proposal grid per stage, e.g. 4,4,2,2");
    cmd.add_option("--folds", o.folds, "override region folds per stage, e.g. 1,1,1,1");
}

LoadOptions toLoadOptions(const ModelOptions& o)
{
    LoadOptions load;
    load.weights = parseWeightsChoice(o.weights);
    if (!o.heads.empty())
        load.hints.heads = parseIntList(o.heads, "--heads");
    if (!o.headDims.empty())
        load.hints.headDims = parseIntList(o.headDims, "--head-dims");
    if (!o.proposals.empty())
        load.hints.proposals = parseIntList(o.proposals, "--proposals");
    if (!o.folds.empty())
        load.hints.folds = parseIntList(o.folds, "--folds");
    return load;
}

LoadedModel loadModel(const ModelOptions& o, c10::Device* deviceOut)
{
    auto device = selectDevice(o.device);
    auto loaded = loadCheckpoint(o.checkpoint, toLoadOptions(o));
    loaded.model->to(device);
    if (deviceOut)
        *deviceOut = device;
    return loaded;
}

std::string weightsLine(const CheckpointInfo& info)
{
    std::string line = info.weights;
    if (info.layout == "timm training checkpoint")
        line += info.hasEma ? " (the file also has " + std::string(info.weights == "state_dict_ema" ? "state_dict" : "state_dict_ema") + ")" : " (no EMA weights in the file)";
    return line;
}

namespace {

int cmdInspect(const ModelOptions& o, bool json)
{
    auto loaded = loadCheckpoint(o.checkpoint, toLoadOptions(o));
    const auto& info = loaded.info;
    const auto& cfg = info.inferred.config;
    auto names = classNamesFor(cfg.numClasses, info.classNames, "");
    if (json) {
        nlohmann::ordered_json j;
        j["file"] = info.path;
        j["container"] = info.container;
        j["layout"] = info.layout;
        j["weights"] = info.weights;
        j["has_ema"] = info.hasEma;
        j["stripped_prefix"] = info.strippedPrefix;
        j["skipped_keys"] = info.skippedKeys;
        j["architecture"] = nlohmann::ordered_json::parse(cfg.toJson());
        j["architecture_source"] = info.configStored ? "stored" : (info.inferred.headsGuessed ? "inferred (heads guessed)" : "inferred");
        j["notes"] = info.inferred.notes;
        j["parameters"] = info.parameterCount;
        j["classes"] = cfg.numClasses;
        j["class_names_source"] = !info.classNames.empty() ? "checkpoint" : (cfg.numClasses == 1000 ? "imagenet1k" : "numeric");
        j["input_size"] = info.inputSize;
        j["preprocess"] = info.preprocess;
        j["min_side_multiple"] = cfg.sizeMultiple();
        auto extras = nlohmann::ordered_json::object();
        for (const auto& [k, v] : info.extras) {
            auto parsed = nlohmann::ordered_json::parse(v, nullptr, false);
            extras[k] = parsed.is_discarded() ? nlohmann::ordered_json(v) : parsed;
        }
        j["extras"] = extras;
        if (!info.argsJson.empty())
            j["args"] = nlohmann::ordered_json::parse(info.argsJson, nullptr, false);
        j["ignored_classes"] = info.ignoredGlobals;
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::cout << "File:         " << info.path << "\n"
              << "Format:       " << (info.container == "zip" ? "torch.save zip" : "legacy torch.save (pre-1.6)") << ", "
              << info.layout << "\n"
              << "Weights:      " << weightsLine(info) << "\n";
    if (!info.strippedPrefix.empty())
        std::cout << "Key prefix:   '" << info.strippedPrefix << "' removed"
                  << (info.skippedKeys ? " (" + std::to_string(info.skippedKeys) + " non-backbone keys skipped)" : "") << "\n";
    std::cout << "Architecture: " << cfg.variant << (info.configStored ? " (stored in the checkpoint)" : " (inferred from tensor shapes)") << "\n"
              << "              " << cfg.summary() << "\n";
    if (!info.inferred.notes.empty())
        std::cout << "Notes:        " << info.inferred.notes << "\n";
    std::cout << "Parameters:   " << info.parameterCount << " (" << std::fixed << std::setprecision(2)
              << info.parameterCount / 1e6 << " M)\n";
    std::cout << "Classes:      " << cfg.numClasses;
    if (cfg.numClasses > 0)
        std::cout << " (" << (!info.classNames.empty() ? "names stored in the checkpoint" : cfg.numClasses == 1000 ? "ImageNet-1K names" : "no names: numbered")
                  << "; first: " << names.front() << ")";
    std::cout << "\n";
    if (info.inputSize)
        std::cout << "Input:        " << info.inputSize << "x" << info.inputSize << ", " << info.preprocess << "\n";
    for (const auto& [k, v] : info.extras)
        std::cout << "Entry:        " << k << " = " << v << "\n";
    if (!info.argsJson.empty()) {
        auto args = nlohmann::ordered_json::parse(info.argsJson, nullptr, false);
        std::cout << "Training args: " << (args.is_object() ? std::to_string(args.size()) + " fields" : std::string("?"));
        if (args.is_object()) {
            for (const char* k : {"model", "epochs", "batch_size", "lr", "weight_decay", "img_size"})
                if (args.contains(k))
                    std::cout << ", " << k << "=" << args[k].dump();
        }
        std::cout << "\n";
    }
    if (!info.ignoredGlobals.empty()) {
        std::cout << "Not executed: ";
        for (size_t i = 0; i < info.ignoredGlobals.size(); ++i)
            std::cout << (i ? ", " : "") << info.ignoredGlobals[i];
        std::cout << " (read as inert values)\n";
    }
    return 0;
}

int cmdBench(const ModelOptions& o, const std::string& arch, const std::string& batches, int size, int repeats,
             bool traced, const std::string& precision, bool json)
{
    FecModel model{nullptr};
    std::string name;
    if (!o.checkpoint.empty()) {
        auto loaded = loadCheckpoint(o.checkpoint, toLoadOptions(o));
        model = loaded.model;
        name = o.checkpoint;
    } else {
        model = FecModel(FecConfig::named(arch));
        name = arch;
    }
    auto device = selectDevice(o.device);
    BenchOptions options;
    options.batches = parseIntList(batches, "--batch");
    for (int b : options.batches)
        if (b < 1 || b > 4096)
            throw std::invalid_argument("--batch values must be between 1 and 4096");
    options.size = size;
    options.repeats = repeats;
    options.traced = traced;
    if (precision == "bf16" || precision == "fp16") {
        if (!device.is_cuda())
            throw std::invalid_argument("--precision " + precision + " is for CUDA; the CPU path is float32");
        options.dtype = precision == "bf16" ? c10::kBFloat16 : c10::kHalf;
    }
    model->config().checkInputSize(size, size);
    auto results = runBenchmark(*model, device, options);
    const int threads = at::get_num_threads();
    if (json) {
        std::cout << benchResultsJson(results, device.str(), threads, name, size) << "\n";
    } else {
        std::cout << "Model " << name << " at " << size << "x" << size << " on " << describeDevice(device)
                  << (traced ? ", traced forward" : "") << ", median of " << repeats << " runs\n";
        for (const auto& r : results)
            std::cout << "  batch " << std::setw(3) << r.batch << ": " << std::fixed << std::setprecision(1) << std::setw(8)
                      << r.imagesPerSecond << " images/s, " << std::setprecision(1) << r.latencyMsMedian
                      << " ms per batch (min " << r.latencyMsMin << ", max " << r.latencyMsMax << ")\n";
    }
    return 0;
}

}  // namespace

int run(int argc, char** argv)
{
    CLI::App app{"fec: inspect, run and explain FEC clustering networks", "fec"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string(FEC_VERSION));
    int threads = 0;
    app.add_option("--threads", threads, "CPU threads for LibTorch (default: number of cores)");

    ModelOptions inspectOpts;
    bool inspectJson = false;
    auto* inspect = app.add_subcommand("inspect", "what a checkpoint holds: format, weights, architecture, classes");
    inspect->add_option("checkpoint", inspectOpts.checkpoint, "checkpoint file")->required();
    inspect->add_option("--weights", inspectOpts.weights, "auto, state_dict or ema")
        ->check(CLI::IsMember({"auto", "state_dict", "ema"}));
    inspect->add_option("--heads", inspectOpts.heads, "override heads per stage");
    inspect->add_option("--head-dims", inspectOpts.headDims, "override head widths per stage");
    inspect->add_option("--proposals", inspectOpts.proposals, "override proposal grid per stage");
    inspect->add_option("--folds", inspectOpts.folds, "override folds per stage");
    inspect->add_flag("--json", inspectJson, "machine-readable output");

    ModelOptions benchOpts;
    std::string benchArch = "fec_small", benchBatches = "1,16", benchPrecision = "fp32";
    int benchSize = 224, benchRepeats = 10;
    bool benchJson = false, benchTraced = false;
    auto* bench = app.add_subcommand("bench", "images/s and latency of a model (random inputs)");
    addModelOptions(*bench, benchOpts, false);
    bench->add_option("--arch", benchArch, "architecture when no checkpoint is given")
        ->check(CLI::IsMember(FecConfig::variantNames()));
    bench->add_option("--batch", benchBatches, "comma-separated batch sizes");
    bench->add_option("--size", benchSize, "input side in pixels (multiple of 32)");
    bench->add_option("--repeats", benchRepeats, "timed runs per batch size")->check(CLI::Range(1, 1000));
    bench->add_option("--precision", benchPrecision, "fp32, or bf16/fp16 on CUDA")
        ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
    bench->add_flag("--traced", benchTraced, "time the traced forward (assignments recorded)");
    bench->add_flag("--json", benchJson, "machine-readable output");

    std::vector<std::unique_ptr<Command>> commands;
    addImageCommands(app, commands);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    try {
        initRuntime(threads);
        if (*inspect)
            return cmdInspect(inspectOpts, inspectJson);
        if (*bench)
            return cmdBench(benchOpts, benchArch, benchBatches, benchSize, benchRepeats, benchTraced, benchPrecision,
                            benchJson);
        for (auto& c : commands)
            if (c->parsed())
                return c->run();
    } catch (const c10::Error& e) {
        std::string message = e.what_without_backtrace();
        if (isOutOfMemory(e)) {
            releaseCachedDeviceMemory();
            message = message.substr(0, message.find('\n')) +
                      "\nThe device ran out of memory: use a smaller --batch or --size, or --device cpu.";
        }
        std::cerr << "fec: " << message << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "fec: " << e.what() << "\n";
        return 2;
    }
    return 2;
}

}  // namespace fec::cli
