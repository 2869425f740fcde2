// `fec concepts`: the concept atlas of a dataset (fec/explain/concepts.h) written into a folder.
// `fec concepts-compare`: how far two atlases of the same segments agree (seeds, K).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "fec/explain/concepts.h"
#include "fec/text.h"

namespace fec::cli {

namespace {

using json = nlohmann::ordered_json;

class ConceptsCommand : public Command {
public:
    explicit ConceptsCommand(CLI::App& parent)
        : Command(parent.add_subcommand("concepts",
                                        "concept atlas: cluster the segments of one pyramid level over a whole "
                                        "dataset into K concepts, with their classes, evidence and contact sheets"))
    {
        auto& a = *m_app;
        addModelOptions(a, m_model, true);
        a.add_option("--data", m_data,
                     "the Fashion-MNIST folder, an image folder (ROOT/<class>/<image>) or a flat folder of images")
            ->required();
        a.add_option("--split", m_split, "test or train (Fashion-MNIST, or ROOT/<split>/ of an image folder)")
            ->check(CLI::IsMember({"test", "train"}))
            ->capture_default_str();
        a.add_option("--out,-o", m_out, "the atlas folder to write (created; an older atlas there is replaced)")
            ->required();
        a.add_option("--level", m_options.level, "pyramid level 1..3 (default: the last)");
        a.add_option("--k", m_options.k, "concepts")->capture_default_str();
        a.add_option("--limit", m_limit, "only the first N images (Fashion-MNIST) or a seeded subset of N (folders)")
            ->check(CLI::NonNegativeNumber);
        a.add_option("--per-concept", m_options.perConcept, "typical and contributing segments shown per concept")
            ->check(CLI::Range(1, 1000))
            ->capture_default_str();
        a.add_option("--seed", m_options.seed, "k-means seed (the same seed gives the same files)")
            ->capture_default_str();
        a.add_option("--batch", m_options.batch, "images per forward")
            ->check(CLI::Range(1, 4096))
            ->capture_default_str();
        a.add_option("--workers", m_options.workers, "image decoding threads (0: in the main thread)")
            ->check(CLI::Range(0, 64))
            ->capture_default_str();
        a.add_option("--attempts", m_options.attempts, "k-means++ restarts (the most compact is kept)")
            ->check(CLI::Range(1, 100))
            ->capture_default_str();
        a.add_option("--size", m_options.size, "model input side (default: stored in the checkpoint, else 224)");
        a.add_option("--preprocess", m_options.preprocess,
                     "squash or crop (default: the checkpoint's, else the data's)")
            ->check(CLI::IsMember({"squash", "crop"}));
        a.add_flag("--json", m_json, "progress as JSON lines on stderr and a JSON summary on stdout");
    }

    int run() override
    {
        const auto started = std::chrono::steady_clock::now();
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto data = explain::openAtlasData(m_data, m_split, m_limit, m_options.seed, loaded.info.classNames);

        SignalScope signals;
        const bool tty = !m_json && ::isatty(STDERR_FILENO);
        int64_t reported = -1;
        std::string lastStage;
        auto progress = [&](int64_t done, int64_t total, const std::string& stage) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : -1;
            if (m_json) {
                if (stage != lastStage || done == total || done - reported >= std::max<int64_t>(1, total / 100)) {
                    json j{{"stage", stage}, {"done", done}, {"total", total}, {"elapsed_s", elapsed}};
                    if (stage == "reading" && done > 0)
                        j["eta_s"] = eta;
                    std::cerr << j.dump() << std::endl;
                    reported = done;
                }
            } else if (stage != "reading") {
                if (stage != lastStage)
                    std::cerr << (tty ? "\n" : "") << "concepts: " << stage << " (" << clockText(elapsed)
                              << " elapsed)\n";
            } else if (tty) {
                std::cerr << "\rconcepts: " << done << "/" << total << " images, " << clockText(elapsed)
                          << " elapsed, ETA " << clockText(eta) << "   " << std::flush;
            } else if (done == total || done - reported >= std::max<int64_t>(1, total / 10)) {
                std::cerr << "concepts: " << done << "/" << total << " images, " << clockText(elapsed)
                          << " elapsed, ETA " << clockText(eta) << "\n";
                reported = done;
            }
            lastStage = stage;
        };

        explain::Atlas atlas;
        try {
            atlas = explain::buildAtlas(*loaded.model, loaded.info, m_model.checkpoint, device, data, m_options,
                                        progress, &g_stopRequested);
            progress(atlas.images.size(), atlas.images.size(), "writing");
            explain::writeAtlas(atlas, m_out, *loaded.model, device, data, &g_stopRequested);
        } catch (const explain::AtlasCancelled&) {
            if (m_json)
                std::cerr << json{{"stage", "interrupted"}}.dump() << std::endl;
            else
                std::cerr << (tty ? "\n" : "") << "concepts: interrupted; nothing written\n";
            return 130;
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (!m_json)
            for (const auto& why : atlas.skipped)
                std::cerr << "fec: skipped " << printableLines(why) << "\n";

        // Concepts by size, each with its three most frequent classes.
        std::vector<int> order(atlas.concepts.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return atlas.concepts[static_cast<size_t>(a)].size > atlas.concepts[static_cast<size_t>(b)].size;
        });
        auto topClasses = [&](const explain::ConceptSummary& c) {
            std::vector<size_t> cls(c.classCounts.size());
            std::iota(cls.begin(), cls.end(), size_t{0});
            std::stable_sort(cls.begin(), cls.end(),
                             [&](size_t a, size_t b) { return c.classCounts[a] > c.classCounts[b]; });
            cls.resize(std::min<size_t>(3, cls.size()));
            return cls;
        };
        if (m_json) {
            json j;
            j["checkpoint"] = printablePath(m_model.checkpoint);
            j["model_sha1"] = atlas.modelSha1;
            j["data"] = printable(data->description());
            j["out"] = printablePath(m_out);
            j["images"] = atlas.images.size();
            j["skipped"] = atlas.skipped;
            j["level"] = atlas.level;
            j["k"] = atlas.k;
            j["segments"] = atlas.segments.size();
            j["fitted_on"] = atlas.fitted;
            j["seconds"] = seconds;
            json concepts = json::array();
            for (int id : order) {
                const auto& c = atlas.concepts[static_cast<size_t>(id)];
                json top = json::array();
                for (auto cls : topClasses(c))
                    top.push_back({{"class", atlas.classNames[cls]}, {"segments", c.classCounts[cls]}});
                concepts.push_back({{"id", id},
                                    {"size", c.size},
                                    {"image_share", c.imageShare},
                                    {"purity", c.purity},
                                    {"top_classes", top}});
            }
            j["concepts"] = concepts;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(loaded.info) << "), "
                  << atlas.inputSize << "x" << atlas.inputSize << " " << atlas.preprocess << "\n"
                  << "Data  " << printable(data->description()) << ": " << atlas.images.size() << " images";
        if (!atlas.skipped.empty())
            std::cout << " (" << atlas.skipped.size() << " unreadable skipped)";
        std::cout << "\n"
                  << atlas.k << " concepts of " << atlas.segments.size() << " level-" << atlas.level
                  << " segments (k-means fitted on " << atlas.fitted << ", seed " << atlas.seed << ")\n";
        std::cout << std::left << std::setw(9) << "concept" << std::right << std::setw(8) << "size" << std::setw(9)
                  << "images" << std::setw(8) << "purity"
                  << "  top classes (share of the concept's segments)\n";
        for (int id : order) {
            const auto& c = atlas.concepts[static_cast<size_t>(id)];
            std::cout << std::left << std::setw(9) << id << std::right << std::setw(8) << c.size << std::setw(8)
                      << std::fixed << std::setprecision(0) << 100 * c.imageShare << "%" << std::setw(7)
                      << 100 * c.purity << "%  ";
            bool first = true;
            for (auto cls : topClasses(c)) {
                if (c.classCounts[cls] == 0)
                    break;
                std::cout << (first ? "" : ", ") << atlas.classNames[cls] << " " << std::setprecision(0)
                          << 100.0 * static_cast<double>(c.classCounts[cls]) /
                                 static_cast<double>(std::max<int64_t>(1, c.size))
                          << "%";
                first = false;
            }
            std::cout << "\n";
        }
        if (!atlas.skipped.empty()) {
            std::cout << "Skipped " << atlas.skipped.size() << " unreadable images:\n";
            for (const auto& why : atlas.skipped)
                std::cout << "  " << printableLines(why) << "\n";
        }
        std::cout << "Wrote " << printablePath(m_out) << " (concepts.json, assignments.npy, centres.npy, images.txt, "
                  << atlas.k << " contact sheets) in " << std::setprecision(1) << seconds << " s\n";
        return 0;
    }

private:
    ModelOptions m_model;
    explain::ConceptOptions m_options;
    std::string m_data, m_split = "test", m_out;
    int64_t m_limit = 0;
    bool m_json = false;
};

class ConceptsCompareCommand : public Command {
public:
    explicit ConceptsCompareCommand(CLI::App& parent)
        : Command(parent.add_subcommand("concepts-compare",
                                        "how far two concept atlases of the same segments agree (another seed or K): "
                                        "adjusted Rand index and, per concept, its best match"))
    {
        auto& a = *m_app;
        a.add_option("first", m_first, "an atlas folder written by `fec concepts`")->required();
        a.add_option("second", m_second, "another atlas of the same data, model and level")->required();
        a.add_flag("--json", m_json, "the result as JSON on stdout");
    }

    int run() override
    {
        const auto first = explain::readAtlas(m_first), second = explain::readAtlas(m_second);
        explain::AtlasAgreement agreement;
        try {
            agreement = explain::compareAtlases(first, second);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(m_first + " and " + m_second + " cannot be compared: " + e.what());
        }
        if (first.modelSha1 != second.modelSha1)
            std::cerr << "fec: note: the atlases come from different model files (SHA-1 " << first.modelSha1 << " and "
                      << second.modelSha1 << ")\n";
        // Most stable first: a concept that reappears whole is one a user can trust across runs.
        auto matches = agreement.matches;
        std::stable_sort(matches.begin(), matches.end(),
                         [](const auto& a, const auto& b) { return a.jaccard > b.jaccard; });
        if (m_json) {
            json j;
            j["first"] = printablePath(m_first);
            j["second"] = printablePath(m_second);
            j["segments"] = agreement.segments;
            j["adjusted_rand"] = agreement.adjustedRand;
            json concepts = json::array();
            for (const auto& m : matches)
                concepts.push_back(
                    {{"id", m.concept},
                     {"name", printable(first.concepts[static_cast<size_t>(m.concept)].name)},
                     {"size", m.size},
                     {"match", m.match},
                     {"match_name",
                      m.match >= 0 ? printable(second.concepts[static_cast<size_t>(m.match)].name) : std::string()},
                     {"shared", m.shared},
                     {"jaccard", m.jaccard}});
            j["concepts"] = concepts;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << printablePath(m_first) << " (K = " << first.k << ", seed " << first.seed << ") versus "
                  << printablePath(m_second) << " (K = " << second.k << ", seed " << second.seed
                  << "): " << agreement.segments << " level-" << first.level << " segments\n"
                  << "Adjusted Rand index " << std::fixed << std::setprecision(3) << agreement.adjustedRand
                  << " (1: the same concepts, 0: chance)\n";
        std::cout << std::left << std::setw(28) << "concept" << std::setw(28) << "best match" << std::right
                  << std::setw(9) << "size" << std::setw(9) << "shared" << std::setw(9) << "Jaccard\n";
        auto label = [](const explain::Atlas& atlas, int id) {
            if (id < 0)
                return std::string("-");
            const auto& name = atlas.concepts[static_cast<size_t>(id)].name;
            return printable(name.empty() ? std::to_string(id) : name + " (" + std::to_string(id) + ")");
        };
        for (const auto& m : matches)
            std::cout << std::left << std::setw(28) << label(first, m.concept) << std::setw(28)
                      << label(second, m.match) << std::right << std::setw(9) << m.size << std::setw(9) << m.shared
                      << std::setw(9) << std::setprecision(2) << m.jaccard << "\n";
        return 0;
    }

private:
    std::string m_first, m_second;
    bool m_json = false;
};

}  // namespace

void addConceptsCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
    commands.push_back(std::make_unique<ConceptsCommand>(app));
    commands.push_back(std::make_unique<ConceptsCompareCommand>(app));
}

}  // namespace fec::cli
