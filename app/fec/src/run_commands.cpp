// `fec predict` and `fec trace`.

#include <filesystem>
#include <iomanip>
#include <iostream>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "fec/analysis.h"
#include "fec/atomic_file.h"
#include "fec/evidence.h"
#include "fec/cli/cli.h"
#include "fec/runtime.h"
#include "fec/tensor_io.h"
#include "fec/text.h"
#ifdef FEC_WITH_IMAGING
#include "fec/imaging/image.h"
#endif

namespace fs = std::filesystem;

namespace fec::cli {

namespace {

bool hasImageExtension(const fs::path& p)
{
    auto ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm", ".jp2"})
        if (ext == e)
            return true;
    return false;
}

}  // namespace

std::vector<std::string> collectInputs(const std::vector<std::string>& paths)
{
    std::vector<std::string> out;
    for (const auto& p : paths) {
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            std::vector<std::string> found;
            for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
                 !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
                if (it->is_regular_file(ec) && hasImageExtension(it->path()))
                    found.push_back(it->path().string());
            }
            std::sort(found.begin(), found.end());
            out.insert(out.end(), found.begin(), found.end());
        } else {
            out.push_back(p);  // missing files are reported when they are read
        }
    }
    return out;
}

namespace {

#ifdef FEC_WITH_IMAGING
class PredictCommand : public Command {
public:
    explicit PredictCommand(CLI::App& parent) : Command(parent.add_subcommand("predict", "top-k classes of images"))
    {
        addModelOptions(*m_app, m_model, true);
        m_app->add_option("--topk", m_topk, "number of classes to show")->check(CLI::Range(1, 100000));
        m_app->add_option("--size", m_size, "input side (default: stored in the checkpoint, else 224)");
        m_app->add_option("--preprocess", m_preprocess, "crop (default, the authors' evaluation) or squash")
            ->check(CLI::IsMember({"squash", "crop"}));
        m_app->add_option("--labels", m_labels, "class names: a file (one per line), imagenet1k or fashion-mnist");
        m_app->add_flag("--json", m_json, "machine-readable output");
        m_app->add_option("images", m_images, "image files or folders")->required();
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        const auto& cfg = info.inferred.config;
        if (cfg.numClasses == 0)
            throw std::invalid_argument(m_model.checkpoint + ": a dense-prediction backbone has no classifier");
        const int size = inputSizeFor(info, m_size);
        cfg.checkInputSize(size, size);
        const auto mode = imaging::parsePreprocess(preprocessFor(info, m_preprocess, "crop"));
        auto names = classNamesFor(cfg.numClasses, info.classNames, m_labels);
        const int k = std::min<int>(m_topk, cfg.numClasses);

        c10::InferenceMode guard;
        int failures = 0;
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        if (!m_json)
            std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(info) << "), " << size
                      << "x" << size << " " << imaging::preprocessName(mode) << ", " << describeDevice(device) << "\n";
        for (const auto& path : collectInputs(m_images)) {
            // File names are bytes and class names come from the checkpoint: both are escaped
            // before they reach the terminal or the JSON (which must be valid UTF-8).
            const auto shown = printablePath(path);
            at::Tensor input;
            try {
                input = imaging::prepareImage(imaging::loadImageRgb(path), size, mode).tensor.unsqueeze(0);
            } catch (const std::exception& e) {
                std::cerr << "fec: skipped " << printable(e.what()) << "\n";
                ++failures;
                continue;
            }
            auto logits = loaded.model->forward(input.to(device)).to(at::kCPU);
            const auto top = topClasses(logits[0], k);
            nlohmann::ordered_json entry;
            entry["file"] = shown;
            if (top.empty()) {
                // topClasses ranks nothing when an output is NaN or infinite.
                const auto message = "the model's outputs are not finite (NaN/inf) for " + shown;
                std::cerr << "fec: " << message << "\n";
                ++failures;
                entry["error"] = message;
                entry["top"] = nlohmann::ordered_json::array();
                all.push_back(entry);
                continue;
            }
            entry["top"] = nlohmann::ordered_json::array();
            if (!m_json)
                std::cout << shown << "\n";
            for (size_t i = 0; i < top.size(); ++i) {
                const int64_t cls = top[i].index;
                const double p = top[i].probability;
                const auto name = printable(names[cls]);
                if (m_json) {
                    entry["top"].push_back(
                        {{"class", cls}, {"name", name}, {"probability", p}, {"logit", logits[0][cls].item<double>()}});
                } else {
                    std::cout << "  " << std::setw(2) << i + 1 << ". " << std::fixed << std::setprecision(2)
                              << std::setw(6) << p * 100.0 << "%  " << name << "  [" << cls << "]\n";
                }
            }
            all.push_back(entry);
        }
        if (m_json)
            std::cout << all.dump(2) << "\n";
        return failures ? 1 : 0;
    }

private:
    ModelOptions m_model;
    int m_topk = 5;
    int m_size = 0;
    std::string m_preprocess, m_labels;
    bool m_json = false;
    std::vector<std::string> m_images;
};
#endif

bool endsWith(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class TraceCommand : public Command {
public:
    explicit TraceCommand(CLI::App& parent)
        : Command(parent.add_subcommand("trace", "write every cluster assignment of one input as .npy files"))
    {
        addModelOptions(*m_app, m_model, true);
        m_app->add_option("--input", m_input, "an image, or an already-normalised float32 [B,3,H,W] .npy")->required();
        m_app->add_option("--out", m_out, "output folder (created if missing)")->required();
        m_app->add_option("--size", m_size, "input side for images (default: stored in the checkpoint, else 224)");
        m_app
            ->add_option("--preprocess", m_preprocess,
                         "squash or crop (default: stored in the checkpoint, else squash, the authors' visualisation)")
            ->check(CLI::IsMember({"squash", "crop"}));
        m_app->add_flag("--features", m_features, "also write every intermediate feature map");
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        at::Tensor input;
        std::string inputKind;
        if (endsWith(m_input, ".npy")) {
            input = loadNpy(m_input);
            if (input.dim() == 3)
                input = input.unsqueeze(0);
            if (input.scalar_type() != at::kFloat || input.dim() != 4 || input.size(1) != info.inferred.config.inChans)
                throw std::invalid_argument(
                    m_input + ": expected a float32 array [B, " + std::to_string(info.inferred.config.inChans) +
                    ", H, W], got " + std::string(c10::toString(input.scalar_type())) + " " + c10::str(input.sizes()));
            inputKind = "npy (used as is)";
        } else {
#ifdef FEC_WITH_IMAGING
            const auto mode = imaging::parsePreprocess(preprocessFor(info, m_preprocess));
            const int size = inputSizeFor(info, m_size);
            info.inferred.config.checkInputSize(size, size);
            input = imaging::prepareImage(imaging::loadImageRgb(m_input), size, mode).tensor.unsqueeze(0);
            inputKind = "image, " + imaging::preprocessName(mode) + " " + std::to_string(size);
#else
            throw std::invalid_argument("this build reads only .npy inputs (built without imaging)");
#endif
        }
        info.inferred.config.checkInputSize(input.size(2), input.size(3));

        Trace trace;
        {
            c10::InferenceMode guard;
            TraceOptions options;
            options.features = m_features;
            trace = loaded.model->forwardTraced(input.to(device), options);
        }

        std::error_code ec;
        fs::create_directories(m_out, ec);
        if (ec)
            throw std::runtime_error("cannot create output folder " + m_out + ": " + ec.message());
        nlohmann::ordered_json files = nlohmann::ordered_json::array();
        auto write = [&](const std::string& name, const at::Tensor& t, const std::string& meaning) {
            saveNpy((fs::path(m_out) / name).string(), t);
            files.push_back({{"file", name},
                             {"shape", t.sizes().vec()},
                             {"dtype", std::string(c10::toString(t.scalar_type()))},
                             {"meaning", meaning}});
        };
        write("input.npy", input.contiguous(), "the normalised input tensor [B,3,H,W] the model ran on");
        if (trace.logits.defined())
            write("logits.npy", trace.logits, "classifier output [B,classes]");
        if (trace.finalMap.defined() && info.inferred.config.numClasses > 0) {
            const auto evidence = computeEvidence(*loaded.model, trace.finalMap);
            write("evidence.npy", evidence.contributions,
                  "[B,classes,N] exact evidence: logit_c = evidence_bias[c] + sum_j evidence[b,c,j]; j = row * " +
                      std::to_string(evidence.gridW) + " + col on the final " + std::to_string(evidence.gridH) + "x" +
                      std::to_string(evidence.gridW) + " grid, i.e. final cluster j (pool3_assign)");
            write("evidence_bias.npy", evidence.bias, "[classes] the head's bias (the evidence of no position)");
        }
        for (size_t i = 0; i < trace.denseFeatures.size(); ++i)
            write("dense" + std::to_string(2 * i) + ".npy", trace.denseFeatures[i],
                  "dense-prediction feature norm" + std::to_string(2 * i) + "(network." + std::to_string(2 * i) + ")");
        for (size_t p = 0; p < trace.pools.size(); ++p) {
            const auto& pool = trace.pools[p];
            const auto prefix = "pool" + std::to_string(p + 1);
            const auto grid = std::to_string(pool.inH) + "x" + std::to_string(pool.inW) + " -> " +
                              std::to_string(pool.outH) + "x" + std::to_string(pool.outW);
            write(prefix + "_assign.npy", pool.assign,
                  "network." + std::to_string(pool.networkIndex) + " ClusterPool (" + grid +
                      "): [B,N] centre (row-major on the output grid) of each input position (row-major)");
            write(prefix + "_similarity.npy", pool.similarity, "[B,N] cosine similarity to the assigned centre");
            write(prefix + "_margin.npy", pool.margin, "[B,N] best minus second-best cosine (assignment confidence)");
            write(prefix + "_key_centres.npy", pool.keyCentres,
                  "[B,M,C] pooled conv_f centres (used by K-means merges)");
            write(prefix + "_representatives.npy", pool.representatives,
                  "[B,M,C] cluster representatives (Vc + sum of assigned V) / (1 + count)");
        }
        for (const auto& block : trace.blocks) {
            const auto prefix = "stage" + std::to_string(block.stage) + "_block" + std::to_string(block.block);
            const auto where =
                "network." + std::to_string(2 * block.stage) + "." + std::to_string(block.block) + " token mixer (" +
                std::to_string(block.height) + "x" + std::to_string(block.width) + " positions, " +
                std::to_string(block.proposalW * block.proposalH * block.foldW * block.foldH) + " centres)";
            write(prefix + "_assign.npy", block.assign, where + ": [B,heads,N] centre of each position, per head");
            write(prefix + "_similarity.npy", block.similarity,
                  "[B,heads,N] sigmoid similarity to the assigned centre");
            write(prefix + "_margin.npy", block.margin, "[B,heads,N] best minus second-best sigmoid similarity");
        }
        for (const auto& [name, t] : trace.features)
            write("feature_" + name + ".npy", t, "intermediate output of " + name);

        nlohmann::ordered_json j;
        j["checkpoint"] = printablePath(m_model.checkpoint);
        j["weights"] = weightsDescription(info);
        j["architecture"] = nlohmann::ordered_json::parse(info.inferred.config.toJson());
        j["input"] = printablePath(m_input);
        j["input_kind"] = inputKind;
        j["device"] = device.str();
        j["files"] = files;
        writeFileAtomic((fs::path(m_out) / "trace.json").string(), j.dump(2) + "\n");
        std::cout << "Wrote " << files.size() + 1 << " files to " << printablePath(m_out) << " (" << weightsLine(info)
                  << ")\n";
        return 0;
    }

private:
    ModelOptions m_model;
    std::string m_input, m_out, m_preprocess;
    int m_size = 0;
    bool m_features = false;
};

}  // namespace

void addImageCommands(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
#ifdef FEC_WITH_IMAGING
    commands.push_back(std::make_unique<PredictCommand>(app));
#endif
    commands.push_back(std::make_unique<TraceCommand>(app));
    addTrainCommands(app, commands);
#ifdef FEC_WITH_IMAGING
    addEvidenceStatsCommand(app, commands);
    addConceptsCommand(app, commands);
#endif
#ifdef FEC_WITH_FIGURES
    addExplainCommand(app, commands);
#endif
}

}  // namespace fec::cli
