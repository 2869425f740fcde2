// `fec explain`: segment pyramids, K-means merges, overlays, figures and data for many images.

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <set>

#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <QGuiApplication>

#include "commands.h"
#include "fec/analysis.h"
#include "fec/atomic_file.h"
#include "fec/figure/figure.h"
#include "fec/evidence.h"
#include "fec/explain/evidence_stats.h"
#include "fec/explain/explain.h"
#include "fec/explain/segment_evidence.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/runtime.h"
#include "fec/tensor_io.h"
#include "fec/text.h"

namespace fs = std::filesystem;

namespace fec::cli {

std::vector<std::string> collectInputs(const std::vector<std::string>& paths);

namespace {

// Folder names per input: the file stem, made unique (and stable) when two inputs share it.
std::vector<std::string> outputNames(const std::vector<std::string>& inputs)
{
    std::map<std::string, int> stems;
    for (const auto& in : inputs)
        ++stems[fs::path(in).stem().string()];
    std::vector<std::string> names;
    for (const auto& in : inputs) {
        std::string stem = fs::path(in).stem().string();
        if (stem.empty() || stem == "." || stem == "..")
            stem = "image";
        if (stems[stem] > 1) {
            // Disambiguate with a hash of the whole path: same inputs, same names.
            const auto h = std::hash<std::string>{}(fs::path(in).lexically_normal().string());
            std::ostringstream id;
            id << std::hex << (h & 0xffffff);
            stem += "-" + id.str();
        }
        names.push_back(stem);
    }
    return names;
}

// Resident and peak resident memory of this process in KiB (Linux; 0 elsewhere).
struct MemoryUse {
    long rssKib = 0, peakKib = 0;
};

MemoryUse memoryUse()
{
    MemoryUse use;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0)
            use.rssKib = std::atol(line.c_str() + 6);
        else if (line.rfind("VmHWM:", 0) == 0)
            use.peakKib = std::atol(line.c_str() + 6);
    }
    return use;
}

class ProgressBar {
public:
    explicit ProgressBar(size_t total) : m_total(total), m_tty(::isatty(STDERR_FILENO)) {}
    void update(size_t done, const std::string& name)
    {
        if (!m_tty)
            return;
        const int width = 30;
        const int filled = m_total ? static_cast<int>(width * done / m_total) : width;
        std::cerr << "\r[" << std::string(filled, '=') << std::string(width - filled, ' ') << "] " << done << "/"
                  << m_total << " " << printable(name.substr(0, 40)) << std::string(10, ' ') << std::flush;
    }
    void finish()
    {
        if (m_tty)
            std::cerr << "\r" << std::string(100, ' ') << "\r" << std::flush;
    }

private:
    size_t m_total;
    bool m_tty;
};

class ExplainCommand : public Command {
public:
    explicit ExplainCommand(CLI::App& parent)
        : Command(parent.add_subcommand("explain", "segment pyramids, K-means merges, overlays and figures, in batch"))
    {
        addModelOptions(*m_app, m_model, true);
        m_app->add_option("--out", m_out, "output folder (one sub-folder per image)")->required();
        m_app->add_option("--k", m_k, "K-means merges of the last level, comma-separated");
        m_app->add_option("--levels", m_levels, "levels to draw: all, or e.g. 1,3");
        m_app->add_option("--format", m_format, "figure formats: png,svg,pdf");
        m_app->add_flag("--data", m_data, "also write 16-bit label PNGs, hierarchy.json and confidence maps");
        m_app->add_option("--preprocess", m_preprocess, "squash (default, the authors' visualisation) or crop")
            ->check(CLI::IsMember({"squash", "crop"}));
        m_app->add_option("--size", m_size, "model input side (default: stored in the checkpoint, else 224)");
        m_app
            ->add_option("--features", m_features,
                         "K-means features: key (pooled key centres, default) or representatives")
            ->check(CLI::IsMember({"key", "representatives"}));
        m_app->add_option("--median", m_median, "median filter size for drawn overlays (display only; 0 = off)");
        m_app->add_option("--opacity", m_opacity, "fill opacity of overlays")->check(CLI::Range(0.0, 1.0));
        m_app->add_option("--dpi", m_dpi, "figure resolution")->check(CLI::Range(50, 1200));
        m_app->add_flag("--overwrite", m_overwrite, "replace files already in an image's folder");
        m_app
            ->add_option("--repeat", m_repeat,
                         "explain every input this many times in one process (soak and leak checks); later passes "
                         "replace the files of the first")
            ->check(CLI::Range(1, 1000000));
        m_app->add_option("--memory-log", m_memoryLog,
                          "write a CSV line per explained image: run, image, seconds, resident and peak memory (KiB)");
        m_app->add_flag("--evidence", m_evidence,
                        "also write each class's exact segment evidence: evidence_<class>.npy (density at the image's "
                        "resolution), segments_<class>.csv (every segment of every level with its contribution and "
                        "ablation effect) and an evidence figure");
        m_app->add_option("--class", m_classes, "evidence for these classes (name or index; default: the top-1 class)");
        m_app->add_option("--versus", m_versus, "evidence for --class versus this class (name or index)");
        m_app
            ->add_option("--baseline", m_baseline,
                         "what an ablated segment is replaced by: mean (of the image's non-empty positions at that "
                         "level, default), zero, or dataset (the model's mean feature per level over a dataset, from "
                         "`fec evidence-stats`)")
            ->check(CLI::IsMember({"mean", "zero", "dataset"}));
        m_app->add_option("--evidence-stats", m_statsFile,
                          "--baseline dataset: the statistics file (default: <checkpoint>.evidence-stats.json)");
        m_app->add_option("inputs", m_inputs, "images and folders (searched recursively)")->required();
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        const auto& cfg = info.inferred.config;
        const int size = inputSizeFor(info, m_size);
        cfg.checkInputSize(size, size);
        const auto mode = imaging::parsePreprocess(preprocessFor(info, m_preprocess));
        const auto ks = parseIntList(m_k, "--k");
        std::set<std::string> formats;
        {
            std::stringstream in(m_format);
            for (std::string f; std::getline(in, f, ',');) {
                if (f != "png" && f != "svg" && f != "pdf")
                    throw std::invalid_argument("--format takes png, svg and pdf (got '" + f + "')");
                formats.insert(f);
            }
        }
        if (m_evidence) {
            if (cfg.numClasses <= 0 || cfg.forkFeat)
                throw NoClassifierError();
            m_classNames = classNamesFor(cfg.numClasses, info.classNames, "");
            for (const auto& c : m_classes)
                m_targets.push_back(explain::parseClass(c, m_classNames));
            m_versusIndex = m_versus.empty() ? -1 : explain::parseClass(m_versus, m_classNames);
            if (m_baseline == "dataset")
                loadDatasetMeans(*loaded.model, size);
            else if (!m_statsFile.empty())
                throw std::invalid_argument("--evidence-stats goes with --baseline dataset");
        } else if (!m_classes.empty() || !m_versus.empty() || m_baseline != "mean" || !m_statsFile.empty()) {
            throw std::invalid_argument("--class, --versus, --baseline and --evidence-stats go with --evidence");
        }
        const auto features = m_features == "representatives" ? imaging::MergeFeatures::Representatives
                                                              : imaging::MergeFeatures::KeyCentres;
        if (m_median != 0 && (m_median < 3 || m_median % 2 == 0))
            throw std::invalid_argument("--median must be 0 or an odd size >= 3");

        // Figures need a Qt GUI application (fonts); none is shown.
        // Qt consumes the arguments it understands from argv, so they are fresh for every run.
        std::unique_ptr<QGuiApplication> app;
        int qtArgc = 3;
        char arg0[] = "fec", arg1[] = "-platform", arg2[] = "offscreen";
        char* qtArgv[] = {arg0, arg1, arg2, nullptr};
        if (!formats.empty() && !QCoreApplication::instance())
            app = std::make_unique<QGuiApplication>(qtArgc, qtArgv);

        const auto inputs = collectInputs(m_inputs);
        if (inputs.empty())
            throw std::invalid_argument("no images found in the given paths");
        const auto names = outputNames(inputs);
        std::error_code ec;
        fs::create_directories(m_out, ec);
        if (ec)
            throw std::runtime_error("cannot create output folder " + m_out + ": " + ec.message());

        // Streamed line by line so that a soak can be watched, and read after a crash.
        std::ofstream memoryLog;
        if (!m_memoryLog.empty()) {
            memoryLog.open(m_memoryLog, std::ios::trunc);
            if (!memoryLog)
                throw std::runtime_error("cannot write the memory log " + m_memoryLog);
            memoryLog << "run,image,seconds,rss_kib,peak_kib\n";
        }
        MemoryUse firstUse;

        const size_t total = inputs.size() * static_cast<size_t>(m_repeat);
        ProgressBar progress(total);
        int failures = 0, done = 0;
        const auto start = std::chrono::steady_clock::now();
        for (size_t run = 0; run < total; ++run) {
            const size_t i = run % inputs.size();
            progress.update(run, names[i]);
            try {
                explainOne(*loaded.model, info, device, inputs[i], fs::path(m_out) / names[i], ks, formats, features,
                           run >= inputs.size());
                ++done;
            } catch (const c10::Error& e) {
                progress.finish();
                std::cerr << "fec: skipped " << printablePath(inputs[i]) << ": "
                          << printableLines(e.what_without_backtrace()) << "\n";
                ++failures;
            } catch (const std::exception& e) {
                progress.finish();
                // Every message names the image: prefixed unless the engine's message already does.
                std::string what = e.what();
                if (what.find(inputs[i]) == std::string::npos)
                    what = inputs[i] + ": " + what;
                std::cerr << "fec: skipped " << printableLines(what) << "\n";
                ++failures;
            }
            if (memoryLog.is_open()) {
                const auto use = memoryUse();
                if (run == 0)
                    firstUse = use;
                memoryLog << run + 1 << "," << printablePath(inputs[i]) << "," << std::fixed << std::setprecision(3)
                          << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << ","
                          << use.rssKib << "," << use.peakKib << "\n"
                          << std::flush;
            }
        }
        progress.finish();
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cout << "Explained " << done << " of " << total << " images into " << printablePath(m_out) << " ("
                  << weightsLine(info) << ", " << size << "x" << size << " " << imaging::preprocessName(mode) << ", "
                  << std::fixed << std::setprecision(1) << seconds << " s)\n";
        if (memoryLog.is_open()) {
            const auto use = memoryUse();
            std::cout << "Resident memory: " << firstUse.rssKib / 1024.0 << " MiB after the first image, "
                      << use.rssKib / 1024.0 << " MiB after the last (peak " << use.peakKib / 1024.0 << " MiB); "
                      << printablePath(m_memoryLog) << " has one line per image\n";
        }
        return failures ? 1 : 0;
    }

private:
    void explainOne(FecModelImpl& model, const CheckpointInfo& info, const c10::Device& device,
                    const std::string& input, const fs::path& dir, const std::vector<int>& ks,
                    const std::set<std::string>& formats, imaging::MergeFeatures features, bool repeated)
    {
        if (!repeated && fs::exists(dir) && !m_overwrite && !fs::is_empty(dir))
            throw std::runtime_error(input + ": " + dir.string() +
                                     " already has files (use --overwrite to replace them)");
        explain::ExplainOptions options;
        options.size = m_size;
        options.preprocess = m_preprocess;
        options.blocks = false;
        options.features = features;
        options.topK = 1;
        auto e = explain::explainImage(model, info, device, input, options);
        // Checked before anything is written: no folder of pictures drawn from NaN.
        if (e.trace.logits.defined() && !at::isfinite(e.trace.logits).all().item<bool>())
            throw std::runtime_error("the model's outputs are not finite (NaN/inf) for " + input);
        fs::create_directories(dir);
        const auto& image = e.image;
        const auto& pyramid = e.pyramid;
        const auto file = [&](const std::string& name) { return (dir / name).string(); };

        saveNpy(file("levels.npy"), pyramid.allPixelLabels());
        std::vector<int> levels;
        if (m_levels == "all") {
            for (int l = 1; l <= pyramid.levelCount(); ++l)
                levels.push_back(l);
        } else {
            levels = parseIntList(m_levels, "--levels");
            for (int l : levels)
                if (l < 1 || l > pyramid.levelCount())
                    throw std::invalid_argument("--levels: the model has levels 1 to " +
                                                std::to_string(pyramid.levelCount()));
        }

        imaging::OverlayStyle style;
        style.medianKernel = m_median;
        style.opacity = m_opacity;
        nlohmann::ordered_json summary;
        summary["input"] = printablePath(input);
        summary["image_size"] = {image.cols, image.rows};
        summary["model_input"] = {e.size, e.size};
        summary["preprocess"] = imaging::preprocessName(e.preprocess);
        if (!e.top.empty())
            summary["top1"] = {{"class", e.top[0].index}, {"probability", e.top[0].probability}};
        summary["levels"] = nlohmann::ordered_json::array();
        for (int l : levels) {
            const auto& lv = pyramid.levels[l - 1];
            const auto s = explain::levelSegmentation(pyramid, l);
            imaging::writeImageAtomic(file("overlay_level" + std::to_string(l) + ".png"),
                                      imaging::overlay(image, s.labels, e.prepared.mapping, style));
            summary["levels"].push_back({{"level", l},
                                         {"grid", {lv.gridH, lv.gridW}},
                                         {"non_empty", lv.nonEmpty.size()},
                                         {"empty", lv.emptyCount()}});
        }
        summary["kmeans"] = nlohmann::ordered_json::array();
        std::vector<int> drawnKs;
        for (int k : ks) {
            const int maxK = e.merger ? e.merger->maxK() : 0;
            if (k < 2 || k > maxK) {
                summary["kmeans"].push_back({{"k", k}, {"skipped", "k must be between 2 and " + std::to_string(maxK)}});
                std::cerr << "fec: " << printablePath(input) << ": k=" << k << " skipped (the last level has " << maxK
                          << " non-empty clusters)\n";
                continue;
            }
            const auto s = explain::kmeansSegmentation(*e.merger, k);
            const auto& merge = e.merger->merge(k);
            saveNpy(file("kmeans_k" + std::to_string(k) + ".npy"), s.labels);
            imaging::writeImageAtomic(file("overlay_kmeans_k" + std::to_string(k) + ".png"),
                                      imaging::overlay(image, s.labels, e.prepared.mapping, style, s.colourOf));
            summary["kmeans"].push_back({{"k", k}, {"inertia", merge.inertia}, {"groups", merge.groupOfCluster}});
            drawnKs.push_back(k);
        }

        if (m_data) {
            for (int l = 1; l <= pyramid.levelCount(); ++l) {
                cv::Mat label16;
                auto labels = pyramid.pixelLabels(l);
                cv::Mat(static_cast<int>(labels.size(0)), static_cast<int>(labels.size(1)), CV_32S,
                        labels.data_ptr<int32_t>())
                    .convertTo(label16, CV_16U);
                imaging::writeImageAtomic(file("level" + std::to_string(l) + ".png"), label16);
            }
            writeFileAtomic(file("hierarchy.json"), hierarchyJson(pyramid) + "\n");
            saveNpy(file("confidence.npy"), confidenceMaps(pyramid));
            auto sim = at::empty({pyramid.levelCount(), pyramid.blockH, pyramid.blockW}, at::kFloat);
            for (int l = 0; l < pyramid.levelCount(); ++l)
                std::copy(pyramid.similarity[l].begin(), pyramid.similarity[l].end(), sim[l].data_ptr<float>());
            saveNpy(file("similarity.npy"), sim);
        }
        if (!formats.empty()) {
            const auto row = figure::explanationRow(
                e, QString::fromStdString(printablePath(fs::path(input).filename())), levels, drawnKs, style);
            figure::FigureOptions figureOptions;
            figureOptions.dpi = m_dpi;
            for (const auto& f : formats)
                figure::writeFigure({row}, fs::path(file("figure." + f)), figureOptions);
        }
        if (m_evidence)
            summary["evidence"] = writeEvidence(model, device, e, input, file, formats);
        writeFileAtomic(file("summary.json"), summary.dump(2) + "\n");
    }

    ModelOptions m_model;
    std::string m_out, m_k = "3,5", m_levels = "all", m_format = "png", m_preprocess, m_features = "key";
    // Writes evidence_<class>.npy, segments_<class>.csv and the evidence figure of every asked
    // class; returns what summary.json records about them.
    nlohmann::ordered_json writeEvidence(FecModelImpl& model, const c10::Device& device, const explain::Explanation& e,
                                         const std::string& input,
                                         const std::function<std::string(const std::string&)>& file,
                                         const std::set<std::string>& formats)
    {
        std::vector<int64_t> targets = m_targets;
        if (targets.empty())
            targets.push_back(e.top.empty() ? 0 : e.top[0].index);
        explain::EvidenceOptions options;
        options.versus = m_versusIndex;
        options.ablationOptions.baseline = parseAblationBaseline(m_baseline);
        options.datasetMeans = m_datasetMeans;
        auto out = nlohmann::ordered_json::array();
        std::vector<at::Tensor> effects;  // every class's ablation effects: each level ablated once per image
        options.effectsCache = &effects;
        for (int64_t target : targets) {
            options.target = target;
            const auto report = explain::segmentEvidence(model, device, e, options);
            std::string tag = safeName(m_classNames[static_cast<size_t>(target)]);
            if (m_versusIndex >= 0)
                tag += "_vs_" + safeName(m_classNames[static_cast<size_t>(m_versusIndex)]);
            saveNpy(file("evidence_" + tag + ".npy"),
                    at::from_blob(const_cast<float*>(report.densityAtImage.ptr<float>()),
                                  {report.densityAtImage.rows, report.densityAtImage.cols}, at::kFloat)
                        .clone());
            writeFileAtomic(file("segments_" + tag + ".csv"), explain::segmentsCsv(report));
            if (!formats.empty()) {
                const auto row = figure::evidenceRow(
                    e, report, QString::fromStdString(printablePath(fs::path(input).filename())),
                    QString::fromStdString(printable(m_classNames[static_cast<size_t>(target)])),
                    m_versusIndex >= 0
                        ? QString::fromStdString(printable(m_classNames[static_cast<size_t>(m_versusIndex)]))
                        : QString());
                figure::FigureOptions figureOptions;
                figureOptions.dpi = m_dpi;
                for (const auto& f : formats)
                    figure::writeFigure({row}, fs::path(file("evidence_" + tag + "." + f)), figureOptions);
            }
            nlohmann::ordered_json entry;
            entry["class"] = target;
            entry["name"] = printable(m_classNames[static_cast<size_t>(target)]);
            if (m_versusIndex >= 0)
                entry["versus"] = m_versusIndex;
            entry["logit"] = report.maps.logit;
            entry["bias"] = report.maps.bias;
            entry["unlocated"] = report.maps.unlocated;
            entry["baseline"] = m_baseline;
            entry["files"] = {"evidence_" + tag + ".npy", "segments_" + tag + ".csv"};
            out.push_back(entry);
        }
        return out;
    }

    // --baseline dataset: the statistics beside the checkpoint (or --evidence-stats), checked
    // against the model file before any image is explained.
    void loadDatasetMeans(FecModelImpl& model, int size)
    {
        const auto& checkpoint = m_model.checkpoint;
        const auto path = m_statsFile.empty() ? explain::evidenceStatsPathFor(checkpoint) : m_statsFile;
        std::error_code ec;
        if (!fs::exists(path, ec))
            throw std::runtime_error("--baseline dataset needs the model's evidence statistics, and " + path +
                                     " does not exist: run `fec evidence-stats --checkpoint " + checkpoint +
                                     " --data <Fashion-MNIST or image folder>` first (or pass --evidence-stats FILE)");
        const auto stats = explain::loadEvidenceStats(path, checkpoint, model);
        if (stats.inputSize != size)
            std::cerr << "fec: note: " << printablePath(path) << " was computed at " << stats.inputSize << "x"
                      << stats.inputSize << "; explaining at " << size << "x" << size << "\n";
        m_datasetMeans = stats.levelMeans;
    }

    // A class name as a file-name part: letters, digits, '-' and '_' kept, the rest '_'.
    static std::string safeName(const std::string& name)
    {
        std::string s;
        for (unsigned char c : name)
            s += (std::isalnum(c) || c == '-' || c == '_') ? static_cast<char>(c) : '_';
        return s.empty() ? std::string("class") : s.substr(0, 64);
    }

    std::vector<std::string> m_inputs;
    bool m_evidence = false;
    std::vector<std::string> m_classes, m_classNames;
    std::string m_versus, m_baseline = "mean", m_statsFile;
    std::vector<at::Tensor> m_datasetMeans;
    std::vector<int64_t> m_targets;
    int64_t m_versusIndex = -1;
    std::string m_memoryLog;
    int m_size = 0, m_median = 0, m_dpi = 150, m_repeat = 1;
    double m_opacity = 0.45;
    bool m_data = false, m_overwrite = false;
};

}  // namespace

void addExplainCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
    commands.push_back(std::make_unique<ExplainCommand>(app));
}

}  // namespace fec::cli
