// `fec explain`: segment pyramids, K-means merges, overlays, figures and data for many images.

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
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/runtime.h"
#include "fec/tensor_io.h"

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
                  << m_total << " " << name.substr(0, 40) << std::string(10, ' ') << std::flush;
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
        m_app->add_option("--features", m_features, "K-means features: key (pooled key centres, default) or representatives")
            ->check(CLI::IsMember({"key", "representatives"}));
        m_app->add_option("--median", m_median, "median filter size for drawn overlays (display only; 0 = off)");
        m_app->add_option("--opacity", m_opacity, "fill opacity of overlays")->check(CLI::Range(0.0, 1.0));
        m_app->add_option("--dpi", m_dpi, "figure resolution")->check(CLI::Range(50, 1200));
        m_app->add_flag("--overwrite", m_overwrite, "replace files already in an image's folder");
        m_app->add_option("--repeat", m_repeat,
                          "explain every input this many times in one process (soak and leak checks); later passes "
                          "replace the files of the first")
            ->check(CLI::Range(1, 1000000));
        m_app->add_option("--memory-log", m_memoryLog,
                          "write a CSV line per explained image: run, image, seconds, resident and peak memory (KiB)");
        m_app->add_option("inputs", m_inputs, "images and folders (searched recursively)")->required();
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        const auto& cfg = info.inferred.config;
        const int size = m_size > 0 ? m_size : (info.inputSize > 0 ? info.inputSize : 224);
        cfg.checkInputSize(size, size);
        const auto mode = imaging::parsePreprocess(
            !m_preprocess.empty() ? m_preprocess : (!info.preprocess.empty() ? info.preprocess : "squash"));
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
                explainOne(*loaded.model, device, inputs[i], fs::path(m_out) / names[i], size, mode, ks, formats,
                           features, cfg, run >= inputs.size());
                ++done;
            } catch (const c10::Error& e) {
                progress.finish();
                std::cerr << "fec: skipped " << inputs[i] << ": " << e.what_without_backtrace() << "\n";
                ++failures;
            } catch (const std::exception& e) {
                progress.finish();
                std::cerr << "fec: skipped " << e.what() << "\n";
                ++failures;
            }
            if (memoryLog.is_open()) {
                const auto use = memoryUse();
                if (run == 0)
                    firstUse = use;
                memoryLog << run + 1 << "," << inputs[i] << "," << std::fixed << std::setprecision(3)
                          << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << ","
                          << use.rssKib << "," << use.peakKib << "\n"
                          << std::flush;
            }
        }
        progress.finish();
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cout << "Explained " << done << " of " << total << " images into " << m_out << " ("
                  << weightsLine(info) << ", " << size << "x" << size << " " << imaging::preprocessName(mode) << ", "
                  << std::fixed << std::setprecision(1) << seconds << " s)\n";
        if (memoryLog.is_open()) {
            const auto use = memoryUse();
            std::cout << "Resident memory: " << firstUse.rssKib / 1024.0 << " MiB after the first image, "
                      << use.rssKib / 1024.0 << " MiB after the last (peak " << use.peakKib / 1024.0 << " MiB); "
                      << m_memoryLog << " has one line per image\n";
        }
        return failures ? 1 : 0;
    }

private:
    void explainOne(FecModelImpl& model, const c10::Device& device, const std::string& input, const fs::path& dir,
                    int size, imaging::Preprocess mode, const std::vector<int>& ks, const std::set<std::string>& formats,
                    imaging::MergeFeatures features, const FecConfig& cfg, bool repeated)
    {
        const auto image = imaging::loadImageRgb(input);
        if (!repeated && fs::exists(dir) && !m_overwrite && !fs::is_empty(dir))
            throw std::runtime_error(input + ": " + dir.string() + " already has files (use --overwrite to replace them)");
        fs::create_directories(dir);
        const auto prepared = imaging::prepareImage(image, size, mode);

        Trace trace;
        {
            c10::InferenceMode guard;
            TraceOptions options;
            options.blocks = false;
            trace = model.forwardTraced(prepared.tensor.unsqueeze(0).to(device), options);
        }
        auto pyramid = buildPyramid(trace, 0);
        imaging::ClusterMerger merger(pyramid, features);
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
                    throw std::invalid_argument("--levels: the model has levels 1 to " + std::to_string(pyramid.levelCount()));
        }

        imaging::OverlayStyle style;
        style.medianKernel = m_median;
        style.opacity = m_opacity;
        nlohmann::ordered_json summary;
        summary["input"] = input;
        summary["image_size"] = {image.cols, image.rows};
        summary["model_input"] = {size, size};
        summary["preprocess"] = imaging::preprocessName(mode);
        if (trace.logits.defined() && cfg.numClasses > 0) {
            auto probs = at::softmax(trace.logits[0], 0);
            summary["top1"] = {{"class", probs.argmax().item<int64_t>()}, {"probability", probs.max().item<double>()}};
        }
        summary["levels"] = nlohmann::ordered_json::array();

        figure::FigureRow row;
        row.label = QString::fromStdString(fs::path(input).filename().string());
        row.panels.push_back({QStringLiteral("Image"), figure::toQImage(image)});
        for (int l : levels) {
            const auto& lv = pyramid.levels[l - 1];
            auto labels = pyramid.pixelLabels(l);
            auto overlay = imaging::overlay(image, labels, prepared.mapping, style);
            imaging::writeImageAtomic(file("overlay_level" + std::to_string(l) + ".png"), overlay);
            const auto title = QString("Level %1 · %2 clusters").arg(l).arg(lv.nonEmpty.size()) +
                               (lv.emptyCount() ? QString(" (%1 empty)").arg(lv.emptyCount()) : QString());
            row.panels.push_back({title, figure::toQImage(overlay)});
            summary["levels"].push_back({{"level", l},
                                         {"grid", {lv.gridH, lv.gridW}},
                                         {"non_empty", lv.nonEmpty.size()},
                                         {"empty", lv.emptyCount()}});
        }
        summary["kmeans"] = nlohmann::ordered_json::array();
        for (int k : ks) {
            if (k < 2 || k > merger.maxK()) {
                summary["kmeans"].push_back({{"k", k}, {"skipped", "k must be between 2 and " + std::to_string(merger.maxK())}});
                std::cerr << "fec: " << input << ": k=" << k << " skipped (the last level has " << merger.maxK()
                          << " non-empty clusters)\n";
                continue;
            }
            const auto& merge = merger.merge(k);
            auto labels = merger.pixelLabels(merge);
            saveNpy(file("kmeans_k" + std::to_string(k) + ".npy"), labels);
            auto overlay = imaging::overlay(image, labels, prepared.mapping, style, &merge.colourOfGroup);
            imaging::writeImageAtomic(file("overlay_kmeans_k" + std::to_string(k) + ".png"), overlay);
            row.panels.push_back({QString("K-means k = %1").arg(k), figure::toQImage(overlay)});
            summary["kmeans"].push_back({{"k", k}, {"inertia", merge.inertia}, {"groups", merge.groupOfCluster}});
        }

        if (m_data) {
            for (int l = 1; l <= pyramid.levelCount(); ++l) {
                cv::Mat label16;
                auto labels = pyramid.pixelLabels(l);
                cv::Mat(static_cast<int>(labels.size(0)), static_cast<int>(labels.size(1)), CV_32S, labels.data_ptr<int32_t>())
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
        figure::FigureOptions options;
        options.dpi = m_dpi;
        for (const auto& f : formats)
            figure::writeFigure({row}, QString::fromStdString(file("figure." + f)), options);
        writeFileAtomic(file("summary.json"), summary.dump(2) + "\n");
    }

    ModelOptions m_model;
    std::string m_out, m_k = "3,5", m_levels = "all", m_format = "png", m_preprocess, m_features = "key";
    std::vector<std::string> m_inputs;
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
