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
#include "fec/text.h"
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
    std::string line = weightsDescription(info);
    if (info.layout == CheckpointLayout::TimmTraining)
        line += info.hasEma
                    ? " (the file also has " +
                          std::string(info.weights == WeightsEntry::StateDictEma ? "state_dict" : "state_dict_ema") +
                          ")"
                    : " (no EMA weights in the file)";
    return line;
}

namespace {

int cmdInspect(const ModelOptions& o, bool json)
{
    auto loaded = loadCheckpoint(o.checkpoint, toLoadOptions(o));
    const auto& info = loaded.info;
    const auto& cfg = info.inferred.config;
    auto names = classNamesFor(cfg.numClasses, info.classNames, "");
    // Every string read from the file is escaped (printable()): the terminal gets no control
    // characters and the JSON stays valid UTF-8, whatever bytes the checkpoint or its name hold.
    auto shownCfg = cfg;
    shownCfg.variant = printable(cfg.variant);
    std::vector<std::string> ignored;
    for (const auto& g : info.ignoredGlobals)
        ignored.push_back(printable(g));
    if (json) {
        nlohmann::ordered_json j;
        j["file"] = printablePath(info.path);
        j["container"] = info.container;
        j["layout"] = toString(info.layout);
        j["weights"] = weightsDescription(info);
        j["has_ema"] = info.hasEma;
        j["stripped_prefix"] = printable(info.strippedPrefix);
        j["skipped_keys"] = info.skippedKeys;
        j["architecture"] = nlohmann::ordered_json::parse(shownCfg.toJson());
        j["architecture_source"] =
            info.configStored ? "stored" : (info.inferred.headsGuessed ? "inferred (heads guessed)" : "inferred");
        j["notes"] = printable(info.inferred.notes);
        j["parameters"] = info.parameterCount;
        j["classes"] = cfg.numClasses;
        j["class_names_source"] =
            !info.classNames.empty() ? "checkpoint" : (cfg.numClasses == 1000 ? "imagenet1k" : "numeric");
        j["input_size"] = info.inputSize;
        j["preprocess"] = printable(info.preprocess);
        j["min_side_multiple"] = cfg.sizeMultiple();
        auto extras = nlohmann::ordered_json::object();
        for (const auto& [k, v] : info.extras) {
            auto parsed = nlohmann::ordered_json::parse(v, nullptr, false);
            extras[printable(k)] = parsed.is_discarded() ? nlohmann::ordered_json(printable(v)) : parsed;
        }
        j["extras"] = extras;
        if (!info.argsJson.empty())
            j["args"] = nlohmann::ordered_json::parse(info.argsJson, nullptr, false);
        j["ignored_classes"] = ignored;
        auto nonFinite = nlohmann::ordered_json::array();
        for (const auto& [key, count] : info.nonFiniteTensors)
            nonFinite.push_back({{"key", printable(key)}, {"count", count}});
        j["non_finite_tensors"] = nonFinite;
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::cout << "File:         " << printablePath(info.path) << "\n"
              << "Format:       " << (info.container == "zip" ? "torch.save zip" : "legacy torch.save (pre-1.6)")
              << ", " << toString(info.layout) << "\n"
              << "Weights:      " << weightsLine(info) << "\n";
    if (!info.nonFiniteTensors.empty()) {
        std::cout << "Warning:      " << info.nonFiniteTensors.size() << " tensor"
                  << (info.nonFiniteTensors.size() == 1 ? " holds" : "s hold")
                  << " NaN or infinite values; whatever this model computes is meaningless:";
        for (size_t i = 0; i < info.nonFiniteTensors.size(); ++i) {
            if (i == 10) {
                std::cout << " ... (" << info.nonFiniteTensors.size() << " in all)";
                break;
            }
            const auto& [key, count] = info.nonFiniteTensors[i];
            std::cout << (i ? ", " : " ") << printable(key) << " (" << count << (count == 1 ? " value)" : " values)");
        }
        std::cout << "\n";
    }
    if (!info.strippedPrefix.empty())
        std::cout << "Key prefix:   '" << printable(info.strippedPrefix) << "' removed"
                  << (info.skippedKeys ? " (" + std::to_string(info.skippedKeys) + " non-backbone keys skipped)" : "")
                  << "\n";
    std::cout << "Architecture: " << shownCfg.variant
              << (info.configStored ? " (stored in the checkpoint)" : " (inferred from tensor shapes)") << "\n"
              << "              " << printable(cfg.summary()) << "\n";
    if (!info.inferred.notes.empty())
        std::cout << "Notes:        " << printable(info.inferred.notes) << "\n";
    std::cout << "Parameters:   " << info.parameterCount << " (" << std::fixed << std::setprecision(2)
              << info.parameterCount / 1e6 << " M)\n";
    std::cout << "Classes:      " << cfg.numClasses;
    if (cfg.numClasses > 0)
        std::cout << " ("
                  << (!info.classNames.empty() ? "names stored in the checkpoint"
                      : cfg.numClasses == 1000 ? "ImageNet-1K names"
                                               : "no names: numbered")
                  << "; first: " << printable(names.front()) << ")";
    std::cout << "\n";
    if (info.inputSize)
        std::cout << "Input:        " << info.inputSize << "x" << info.inputSize << ", " << printable(info.preprocess)
                  << "\n";
    for (const auto& [k, v] : info.extras)
        std::cout << "Entry:        " << printable(k) << " = " << printable(v) << "\n";
    if (!info.argsJson.empty()) {
        auto args = nlohmann::ordered_json::parse(info.argsJson, nullptr, false);
        std::cout << "Training args: "
                  << (args.is_object() ? std::to_string(args.size()) + " fields" : std::string("?"));
        if (args.is_object()) {
            for (const char* k : {"model", "epochs", "batch_size", "lr", "weight_decay", "img_size"})
                if (args.contains(k))
                    std::cout << ", " << k << "="
                              << printable(
                                     args[k].dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
        }
        std::cout << "\n";
    }
    if (!info.ignoredGlobals.empty()) {
        std::cout << "Not executed: ";
        for (size_t i = 0; i < ignored.size(); ++i)
            std::cout << (i ? ", " : "") << ignored[i];
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
        name = printablePath(o.checkpoint);
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
            std::cout << "  batch " << std::setw(3) << r.batch << ": " << std::fixed << std::setprecision(1)
                      << std::setw(8) << r.imagesPerSecond << " images/s, " << std::setprecision(1) << r.latencyMsMedian
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
        std::cerr << "fec: " << printableLines(message) << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "fec: " << printableLines(e.what()) << "\n";
        return 2;
    }
    return 2;
}

}  // namespace fec::cli
