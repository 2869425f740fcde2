// `fec evidence-stats`: the mean feature of every pyramid level over a dataset, written beside the
// model for the `dataset` ablation baseline (`fec explain --evidence --baseline dataset`, the
// window's Evidence view).

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "fec/evidence.h"
#include "fec/explain/evidence_stats.h"
#include "fec/file_hash.h"
#include "fec/text.h"

namespace fec::cli {

namespace {

using json = nlohmann::ordered_json;

class EvidenceStatsCommand : public Command {
public:
    explicit EvidenceStatsCommand(CLI::App& parent)
        : Command(parent.add_subcommand(
              "evidence-stats",
              "mean feature of every pyramid level over a dataset, beside the model: the `dataset` ablation "
              "baseline of `fec explain --evidence --baseline dataset` and the window's Evidence view"))
    {
        auto& a = *m_app;
        addModelOptions(a, m_model, true);
        a.add_option("--data", m_data,
                     "the Fashion-MNIST folder or an image folder (ROOT/<class>/<image> or ROOT/<split>/...)")
            ->required();
        a.add_option("--split", m_split, "test, val or train (Fashion-MNIST: test and val are the t10k files)")
            ->check(CLI::IsMember({"test", "val", "train"}))
            ->capture_default_str();
        a.add_option("--limit", m_limit,
                     "only the first N images (Fashion-MNIST) or a seeded subset of N (image folder); 0: all")
            ->check(CLI::NonNegativeNumber);
        a.add_option("--size", m_size, "model input side (default: stored in the checkpoint, else 224)");
        a.add_option("--preprocess", m_preprocess,
                     "squash or crop (default: stored in the checkpoint, else the dataset's; use what `fec explain` "
                     "uses)")
            ->check(CLI::IsMember({"squash", "crop"}));
        a.add_option("--batch", m_batch, "images per forward")->check(CLI::Range(1, 65536))->capture_default_str();
        a.add_option("--workers", m_workers, "image decoding threads (0: in the main thread)")
            ->check(CLI::Range(0, 64))
            ->capture_default_str();
        a.add_option("--out,-o", m_out, "the file to write (default: <checkpoint>.evidence-stats.json)");
        a.add_flag("--json", m_json, "machine-readable summary on stdout");
    }

    int run() override
    {
        const auto started = std::chrono::steady_clock::now();
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        const auto& cfg = info.inferred.config;
        if (cfg.numClasses <= 0 || cfg.forkFeat)
            throw NoClassifierError();
        const int size = inputSizeFor(info, m_size);
        cfg.checkInputSize(size, size);
        // The model file's identity first: the statistics are refused with any other file.
        const auto sha = fileSha1(m_model.checkpoint);
        const auto out = m_out.empty() ? explain::evidenceStatsPathFor(m_model.checkpoint) : m_out;
        const auto data = openDataset(m_data, m_split, m_limit, {});
        const auto resize = train::parseEvalResize(preprocessFor(info, m_preprocess, data->preprocess()));

        SignalScope signals;
        const auto computing = std::chrono::steady_clock::now();
        const bool tty = ::isatty(STDERR_FILENO);
        int64_t reported = 0;
        auto progress = [&](int64_t done, int64_t total) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - computing).count();
            const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : -1;
            const int percent = static_cast<int>(100 * done / std::max<int64_t>(1, total));
            if (tty) {
                std::cerr << "\revidence-stats: " << done << "/" << total << " images (" << percent << "%), "
                          << clockText(elapsed) << " elapsed, ETA " << clockText(eta) << "   " << std::flush;
            } else if (done == total || done - reported >= std::max<int64_t>(1, total / 10)) {
                std::cerr << "evidence-stats: " << done << "/" << total << " images (" << percent << "%), "
                          << clockText(elapsed) << " elapsed, ETA " << clockText(eta) << "\n";
                reported = done;
            }
        };
        explain::EvidenceStats stats;
        try {
            stats = explain::computeEvidenceStats(*loaded.model, *data, size, resize, m_batch, progress,
                                                  &g_stopRequested, m_workers);
        } catch (const std::runtime_error&) {
            if (tty)
                std::cerr << "\n";
            if (!g_stopRequested)
                throw;
            std::cerr << "evidence-stats: interrupted; nothing written\n";
            return 130;
        }
        if (tty)
            std::cerr << "\n";
        stats.modelSha1 = sha;
        writeEvidenceStats(stats, out);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        for (const auto& what : stats.skippedExamples)
            std::cerr << "fec: skipped " << printableLines(what) << "\n";
        if (stats.skipped > static_cast<int64_t>(stats.skippedExamples.size()))
            std::cerr << "fec: ... " << stats.skipped << " unreadable images skipped in all\n";

        const auto grid = [&](size_t l) {
            const int64_t side = size / 4 / (int64_t{2} << l);
            return side * side;
        };
        if (m_json) {
            json j;
            j["checkpoint"] = printablePath(m_model.checkpoint);
            j["model_sha1"] = sha;
            j["weights"] = weightsDescription(info);
            j["data"] = printable(stats.data);
            j["size"] = size;
            j["preprocess"] = stats.preprocess;
            j["images"] = stats.images;
            j["skipped"] = stats.skipped;
            j["levels"] = json::array();
            for (size_t l = 0; l < stats.levelMeans.size(); ++l)
                j["levels"].push_back({{"level", l + 1},
                                       {"dims", stats.levelMeans[l].numel()},
                                       {"positions", stats.positions[l]},
                                       {"grid_positions", grid(l)}});
            j["out"] = printablePath(out);
            j["seconds"] = seconds;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(info) << "), " << size << "x"
                  << size << " " << stats.preprocess << "\n"
                  << "Data  " << printable(stats.data) << "\n"
                  << "Averaged " << stats.images << " images";
        if (stats.skipped > 0)
            std::cout << " (" << stats.skipped << " unreadable skipped)";
        std::cout << "; non-empty positions per level:\n";
        for (size_t l = 0; l < stats.levelMeans.size(); ++l)
            std::cout << "  level " << l + 1 << ": " << stats.positions[l] << " (" << std::fixed << std::setprecision(1)
                      << static_cast<double>(stats.positions[l]) /
                             static_cast<double>(std::max<int64_t>(1, stats.images))
                      << " of " << grid(l) << " per image), " << stats.levelMeans[l].numel() << " dims\n";
        std::cout << "Wrote " << printablePath(out) << " in " << std::setprecision(1) << seconds << " s\n";
        return 0;
    }

private:
    ModelOptions m_model;
    std::string m_data, m_split = "test", m_preprocess, m_out;
    int64_t m_limit = 0;
    int m_size = 0, m_batch = 64, m_workers = 1;
    bool m_json = false;
};

}  // namespace

void addEvidenceStatsCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
    commands.push_back(std::make_unique<EvidenceStatsCommand>(app));
}

}  // namespace fec::cli
