// `fec train` (single process, a rank of a c10d job, or the launcher of one) and `fec eval`.

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "fec/text.h"
#include "fec/atomic_file.h"
#include "fec/runtime.h"
#include "fec/train/distributed.h"
#include "fec/train/train_options.h"
#include "fec/train/trainer.h"
#ifdef FEC_WITH_IMAGING
#include "fec/datasets/image_folder.h"
#include "fec/explain/faithfulness.h"
#include "fec/explain/segmentation_eval.h"
#endif

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace fec::cli {

std::atomic<bool> g_stopRequested{false};

namespace {

volatile std::sig_atomic_t g_signals = 0;

extern "C" void onStopSignal(int sig)
{
    // First signal: stop at the next step boundary after a checkpoint. Second: stop now.
    if (g_signals++ > 0) {
        std::signal(sig, SIG_DFL);
        std::raise(sig);
        return;
    }
    g_stopRequested.store(true);
}

}  // namespace

SignalScope::SignalScope()
{
    g_stopRequested = false;
    g_signals = 0;
    struct sigaction action {};
    action.sa_handler = onStopSignal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &m_int);
    sigaction(SIGTERM, &action, &m_term);
}

SignalScope::~SignalScope()
{
    sigaction(SIGINT, &m_int, nullptr);
    sigaction(SIGTERM, &m_term, nullptr);
}

std::string clockText(double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8)
        return "?";
    const auto s = static_cast<long long>(seconds + 0.5);
    std::ostringstream out;
    out << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
    return out.str();
}

train::DatasetPtr openDataset(const std::string& path, const std::string& split, int64_t limit,
                              const std::vector<std::string>& storedNames)
{
    using train::FashionMnist;
    std::error_code ec;
    if (!fs::is_directory(path, ec))
        throw std::invalid_argument("--data " + path + ": not a folder");
    if (FashionMnist::detect(path))
        return std::make_shared<FashionMnist>(
            path, split == "train" ? FashionMnist::Split::Train : FashionMnist::Split::Test, limit);
#ifdef FEC_WITH_IMAGING
    std::string root = path;
    const auto candidate = (fs::path(path) / split).string();
    if (datasets::ImageFolder::looksLikeImageFolder(candidate))
        root = candidate;
    else if (split == "test" && datasets::ImageFolder::looksLikeImageFolder((fs::path(path) / "val").string()))
        root = (fs::path(path) / "val").string();
    if (!datasets::ImageFolder::looksLikeImageFolder(root))
        throw std::invalid_argument("--data " + path + ": neither Fashion-MNIST IDX files nor an image folder");
    return train::limitDataset(std::make_shared<datasets::ImageFolder>(root, storedNames), limit, 0);
#else
    (void)storedNames;
    throw std::invalid_argument("--data " + path + ": no Fashion-MNIST IDX files there");
#endif
}

namespace {

template <typename T> std::vector<T> parseList(const std::string& text, const std::string& what)
{
    std::vector<T> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        std::istringstream one(item);
        T v;
        if (!(one >> v) || !one.eof())
            throw std::invalid_argument(what + ": '" + item + "' is not a number");
        out.push_back(v);
    }
    return out;
}

template <typename T, size_t N>
void setStageValues(std::array<T, N>& field, const std::string& text, const std::string& what)
{
    auto values = parseList<T>(text, what);
    if (values.size() != N)
        throw std::invalid_argument(what + " needs " + std::to_string(N) +
                                    " comma-separated values (one per stage), got '" + text + "'");
    std::copy(values.begin(), values.end(), field.begin());
}

std::string upper(std::string text)
{
    for (auto& c : text)
        c = c == ' ' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return text;
}

std::string percent(double v)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << v << "%";
    return s.str();
}

std::vector<std::string> processArguments()
{
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string a; std::getline(in, a, '\0');)
        args.push_back(a);
    return args;
}

bool isDirectory(const std::string& path)
{
    std::error_code ec;
    return fs::is_directory(path, ec);
}

struct DataSpec {
    std::string data, val;
    double valSplit = 0;
    int64_t trainLimit = 0, valLimit = 0;
};

// What run.json's "command" records of the data flags.
json recordedData(const DataSpec& data)
{
    json j;
    j["data"] = data.data.empty() ? data.data : printablePath(fs::absolute(data.data));
    j["val"] = data.val.empty() ? data.val : fs::absolute(data.val).string();
    j["val_split"] = data.valSplit;
    j["train_limit"] = data.trainLimit;
    j["val_limit"] = data.valLimit;
    return j;
}

// `--data` / `--val` / `--val-split` to (train, val) datasets.
std::pair<train::DatasetPtr, train::DatasetPtr> openTrainingData(const DataSpec& spec, uint64_t seed, std::ostream& log)
{
    using train::FashionMnist;
    if (spec.data.empty())
        throw std::invalid_argument("--data is required");
    if (!isDirectory(spec.data))
        throw std::invalid_argument("--data " + spec.data + ": not a folder");
    train::DatasetPtr trainSet, valSet;
    std::string defaultVal;
    if (FashionMnist::detect(spec.data)) {
        trainSet = std::make_shared<FashionMnist>(spec.data, FashionMnist::Split::Train, spec.trainLimit);
        defaultVal = "fashion-mnist-test";
    } else {
#ifdef FEC_WITH_IMAGING
        std::string root = spec.data;
        if (datasets::ImageFolder::looksLikeImageFolder((fs::path(root) / "train").string())) {
            root = (fs::path(root) / "train").string();
            const auto valRoot = (fs::path(spec.data) / "val").string();
            if (datasets::ImageFolder::looksLikeImageFolder(valRoot))
                defaultVal = valRoot;
        }
        if (!datasets::ImageFolder::looksLikeImageFolder(root))
            throw std::invalid_argument("--data " + spec.data +
                                        ": neither Fashion-MNIST IDX files nor an image folder (ROOT/<class>/<image>)");
        trainSet = train::limitDataset(std::make_shared<datasets::ImageFolder>(root), spec.trainLimit, seed);
#else
        throw std::invalid_argument(
            "--data " + spec.data +
            ": no Fashion-MNIST IDX files there (this build reads image folders only with imaging)");
#endif
    }
    if (spec.valSplit > 0) {
        if (!spec.val.empty())
            throw std::invalid_argument("give either --val or --val-split, not both");
        auto parts = train::splitDataset(trainSet, spec.valSplit, seed);
        trainSet = parts.first;
        valSet = parts.second;
    } else {
        std::string valPath = spec.val.empty() ? defaultVal : spec.val;
        if (valPath == "fashion-mnist-test") {
            valSet = std::make_shared<FashionMnist>(spec.data, FashionMnist::Split::Test, spec.valLimit);
        } else if (!valPath.empty()) {
            if (FashionMnist::detect(valPath)) {
                valSet = std::make_shared<FashionMnist>(valPath, FashionMnist::Split::Test, spec.valLimit);
            } else {
#ifdef FEC_WITH_IMAGING
                valSet = train::limitDataset(std::make_shared<datasets::ImageFolder>(valPath, trainSet->classNames()),
                                             spec.valLimit, seed);
#else
                throw std::invalid_argument("--val " + valPath + ": not Fashion-MNIST IDX files");
#endif
            }
        } else {
            log << "fec train: no validation set (give --val PATH or --val-split F to measure accuracy each epoch)\n";
        }
    }
    if (valSet && spec.valLimit > 0 && spec.valSplit > 0)
        valSet = train::limitDataset(valSet, spec.valLimit, seed);
    return {trainSet, valSet};
}

class TrainCommand : public Command {
public:
    explicit TrainCommand(CLI::App& parent)
        : Command(parent.add_subcommand("train", "train or fine-tune an FEC model (optionally on several processes)"))
    {
        auto& a = *m_app;
        a.add_option("--data", m_data.data,
                     "training data: an image folder (ROOT/<class>/<image>, or ROOT/train + ROOT/val) or a folder "
                     "with the Fashion-MNIST IDX files");
        a.add_option("--out", m_out, "run folder: run.json, metrics.jsonl, TensorBoard events, last/best.pth.tar");
        a.add_option("--val", m_data.val, "validation data (default: ROOT/val, or the Fashion-MNIST test split)");
        a.add_option("--val-split", m_data.valSplit, "hold out this fraction of the training data (fixed by --seed)")
            ->check(CLI::Range(0.0, 0.9));
        a.add_option("--train-limit", m_data.trainLimit, "use only N training images (quick runs)");
        a.add_option("--val-limit", m_data.valLimit, "use only N validation images");
        a.add_option("--arch", m_arch, "architecture of a new model")
            ->check(CLI::IsMember(FecConfig::variantNames()))
            ->capture_default_str();
        a.add_option("--config", m_configFile, "architecture from a JSON file (FecConfig JSON, as in run.json)");
        a.add_option("--layers", m_layers, "custom architecture: blocks per stage, e.g. 1,1,2,1");
        a.add_option("--dims", m_dims, "custom architecture: widths per stage, e.g. 32,64,128,192");
        a.add_option("--heads", m_heads, "custom architecture: heads per stage, e.g. 2,2,4,4");
        a.add_option("--head-dims", m_headDims, "custom architecture: head widths per stage, e.g. 16,16,16,16");
        a.add_option("--mlp-ratios", m_mlpRatios, "custom architecture: MLP ratios per stage, e.g. 4,4,4,4");
        a.add_option("--proposals", m_proposals, "custom architecture: proposal grid per stage, e.g. 4,4,2,2");
        // The training options: one table (fec/train/train_options.h) for these flags, run.json and the explorer.
        const auto& table = train::trainOptionTable();
        m_optionText.resize(table.size());
        for (size_t i = 0; i < table.size(); ++i) {
            const auto& row = table[i];
            if (row.flag.empty())
                continue;
            const std::string names = row.flag == "--checkpoint" ? row.flag + ",-c" : row.flag;
            if (row.switchValue) {
                a.add_flag(names, row.help);
                continue;
            }
            // What --help shows after the type: the choices or the range.
            std::string accepted;
            for (const auto& c : row.choices)
                accepted += (accepted.empty() ? "{" : ",") + c;
            if (!accepted.empty())
                accepted += "}";
            else if (row.min && row.max)  // the ranged options are counts
                accepted = "in [" + std::to_string(static_cast<long long>(*row.min)) + " - " +
                           std::to_string(static_cast<long long>(*row.max)) + "]";
            auto* option = a.add_option(names, m_optionText[i], row.help)
                               ->type_name(row.type == train::OptionType::Text ? "TEXT" : upper(row.typeName()))
                               ->check(CLI::Validator(
                                   [&row](std::string& text) {
                                       train::TrainOptions scratch;
                                       try {
                                           row.set(scratch, text);
                                       } catch (const std::invalid_argument& e) {
                                           const std::string why = e.what(), prefix = row.flag + ": ";
                                           return why.rfind(prefix, 0) == 0 ? why.substr(prefix.size()) : why;
                                       }
                                       return std::string();
                                   },
                                   accepted));
            if (!row.defaultValue().empty())
                option->default_str(row.defaultValue());
        }
        a.add_flag("--no-augment", m_noAugment, "no crop, flip, erasing or mixing: resize only");
        a.add_flag("--dry-run", m_dryRun,
                   "check the flags, print the options run.json would record (JSON) and exit without reading data");
        a.add_flag("--json", m_json, "print the metric lines (JSON) on stdout instead of text");
        a.add_option("--nproc-per-node", m_launch.nprocPerNode,
                     "data-parallel processes on this machine (c10d, Gloo on CPU)")
            ->check(CLI::Range(1, 1024));
        a.add_option("--nnodes", m_launch.nnodes, "machines in the job")
            ->check(CLI::Range(1, 1024))
            ->capture_default_str();
        a.add_option("--node-rank", m_launch.nodeRank, "this machine's index in [0, --nnodes)")->capture_default_str();
        a.add_option("--master-addr", m_launch.masterAddr, "address of the machine running rank 0")
            ->capture_default_str();
        a.add_option("--master-port", m_launch.masterPort, "free TCP port on the master for the rendezvous")
            ->capture_default_str();
        a.add_option("--dist-timeout", m_distTimeout, "seconds to wait for another rank before failing")
            ->check(CLI::Range(1, 86400))
            ->capture_default_str();
        a.add_flag("--bench", m_bench, "time training steps on random data (with --arch, --size, --batch) and exit");
        a.add_option("--bench-steps", m_benchSteps, "timed steps for --bench")
            ->check(CLI::Range(1, 10000))
            ->capture_default_str();
        a.add_option("--bench-warmup", m_benchWarmup, "untimed steps before them")
            ->check(CLI::Range(0, 10000))
            ->capture_default_str();
    }

    int run() override
    {
        if (m_bench)
            return runBench();
        if (m_dryRun)
            return dryRun();
        if (m_app->count("--nproc-per-node") && !std::getenv("LOCAL_RANK"))
            return launch();
        SignalScope signals;
        auto env = train::distOptionsFromEnv();
        std::unique_ptr<train::DistContext> dist;
        if (env && env->worldSize > 1) {
            env->timeout = std::chrono::seconds(m_distTimeout);
            const auto threads = std::getenv("OMP_NUM_THREADS");
            if (threads && !hasThreadsOption())
                setThreadCount(std::atoi(threads));
            const auto device = selectDevice(givenOptions().device);
            dist = std::make_unique<train::DistContext>(*env, device);
        }
        try {
            return train(dist.get());
        } catch (const std::exception& e) {
            if (dist)
                dist->reportFailure(e.what());
            throw;
        }
    }

private:
    bool hasThreadsOption() const
    {
        for (const auto& a : processArguments())
            if (a == "--threads" || a.rfind("--threads=", 0) == 0)
                return true;
        return false;
    }

    FecConfig architecture() const
    {
        FecConfig c = FecConfig::named(m_arch);
        if (!m_configFile.empty()) {
            std::ifstream in(m_configFile);
            if (!in)
                throw std::invalid_argument("--config: cannot read " + m_configFile);
            std::stringstream text;
            text << in.rdbuf();
            try {
                c = FecConfig::fromJson(text.str());
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument("--config " + m_configFile + ": " + e.what());
            }
        }
        bool custom = false;
        auto apply = [&](const std::string& text, auto& field, const char* what) {
            if (!text.empty()) {
                setStageValues(field, text, what);
                custom = true;
            }
        };
        apply(m_layers, c.layers, "--layers");
        apply(m_dims, c.dims, "--dims");
        apply(m_heads, c.heads, "--heads");
        apply(m_headDims, c.headDims, "--head-dims");
        apply(m_mlpRatios, c.mlpRatios, "--mlp-ratios");
        if (!m_proposals.empty()) {
            setStageValues(c.proposalW, m_proposals, "--proposals");
            c.proposalH = c.proposalW;
            custom = true;
        }
        if (custom)
            c.variant = "custom";
        // The one check every architecture goes through, whatever its source.
        try {
            c.validate();
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string(e.what()) +
                                        (m_configFile.empty() ? "" : " (--config " + m_configFile + " and flags)"));
        }
        return c;
    }

    bool given(const std::string& flag) const { return m_app->count(flag) > 0; }

    // The table's flags given on this command line, over the defaults (the architecture aside).
    train::TrainOptions givenOptions() const
    {
        train::TrainOptions o;
        const auto& table = train::trainOptionTable();
        for (size_t i = 0; i < table.size(); ++i) {
            const auto& row = table[i];
            if (row.flag.empty() || !given(row.flag))
                continue;
            row.set(o, row.switchValue ? (*row.switchValue ? "true" : "false") : m_optionText[i]);
        }
        if (m_noAugment) {
            o.augment.randomCrop = false;
            o.augment.hflip = 0;
            o.augment.eraseProb = 0;
            o.mix.mixupAlpha = o.mix.cutmixAlpha = 0;
        }
        return o;
    }

    // Options of this invocation; with --resume, the stored ones overridden by flags given again.
    train::TrainOptions effectiveOptions(DataSpec& data)
    {
        train::TrainOptions o = givenOptions();
        o.config = architecture();
        if (m_out.empty())
            throw std::invalid_argument("--out is required");
        o.outDir = m_out;
        if (!o.resume)
            return o;

        const auto runJson = (fs::path(m_out) / "run.json").string();
        std::ifstream in(runJson);
        if (!in)
            return o;  // the trainer reports a missing last.pth.tar
        json run = json::parse(in, nullptr, false);
        if (run.is_discarded() || !run.contains("options"))
            throw std::invalid_argument(runJson + ": not a run description");
        train::TrainOptions r;
        train::optionsFromJson(run["options"].dump(), r);
        r.resume = true;
        r.outDir = m_out;
        // Run-length and housekeeping flags given now win; the recipe stays as the run started.
        const auto& table = train::trainOptionTable();
        for (size_t i = 0; i < table.size(); ++i) {
            const auto& row = table[i];
            if (row.flag.empty() || row.flag == "--resume" || !given(row.flag))
                continue;
            if (row.role == train::OptionRole::Run)
                row.parse(r, row.value(o));
            else
                std::cerr << "fec train: note: " << row.flag
                          << " is ignored with --resume (the run keeps its setting)\n";
        }
        for (const char* flag : {"--no-augment", "--arch", "--config", "--layers", "--dims", "--heads", "--head-dims",
                                 "--mlp-ratios", "--proposals"})
            if (given(flag))
                std::cerr << "fec train: note: " << flag << " is ignored with --resume (the run keeps its setting)\n";
        if (run.contains("command") && run["command"].is_object()) {
            const auto& cmd = run["command"];
            if (data.data.empty())
                data.data = cmd.value("data", std::string());
            if (!given("--val"))
                data.val = cmd.value("val", data.val);
            if (!given("--val-split"))
                data.valSplit = cmd.value("val_split", data.valSplit);
            if (!given("--train-limit"))
                data.trainLimit = cmd.value("train_limit", data.trainLimit);
            if (!given("--val-limit"))
                data.valLimit = cmd.value("val_limit", data.valLimit);
        }
        return r;
    }

    int train(train::DistContext* dist)
    {
        const int rank = dist ? dist->rank() : 0;
        DataSpec data = m_data;
        auto o = effectiveOptions(data);
        json command = recordedData(data);
        command["argv"] = processArguments();
        o.argsJson = command.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

        std::ostream& log = std::cerr;
        auto [trainSet, valSet] = openTrainingData(data, o.seed, log);
        auto note = [&](const std::string& line) { log << "fec train: " << line << "\n"; };
        train::Trainer trainer(o, trainSet, valSet, dist, note);
        const auto& eff = trainer.options();
        if (rank == 0) {
            log << "fec train: " << trainSet->description() << "\n";
            if (valSet)
                log << "fec train: validation on " << valSet->description() << "\n";
            log << "fec train: " << eff.config.variant << " (" << eff.config.summary() << "), "
                << trainer.model()->parameterCount() << " parameters, " << eff.size << "x" << eff.size << ", "
                << (dist ? dist->worldSize() : 1) << " x " << eff.batch << " x " << eff.accum << " images per step, "
                << trainer.stepsPerEpoch() << " steps per epoch, " << trainer.totalSteps() << " in all, "
                << describeDevice(selectDevice(eff.device)) << "\n";
        }

        const int64_t total = trainer.totalSteps();
        const int64_t epochs = (total + trainer.stepsPerEpoch() - 1) / trainer.stepsPerEpoch();
        int64_t firstStep = -1;
        auto started = std::chrono::steady_clock::now();
        const bool json = m_json;
        auto report = [&](const train::TrainEvent& e) {
            if (json) {
                std::cout << train::eventToJson(e) << std::endl;
                return;
            }
            std::ostringstream line;
            line << std::fixed;
            if (e.phase == "train") {
                // The first logged step includes start-up work: time from there.
                if (firstStep < 0) {
                    firstStep = e.step;
                    started = std::chrono::steady_clock::now();
                }
                const double seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
                const double eta = e.step > firstStep ? seconds / static_cast<double>(e.step - firstStep) *
                                                            static_cast<double>(total - e.step)
                                                      : -1;
                line << "epoch " << e.epoch + 1 << "/" << epochs << "  step " << e.step << "/" << e.totalSteps
                     << "  loss " << std::setprecision(4) << e.loss << "  lr " << std::scientific
                     << std::setprecision(2) << e.lr << std::fixed;
                if (e.top1)
                    line << "  top-1 " << percent(*e.top1);
                line << "  " << std::setprecision(1) << e.imagesPerSecond << " images/s  ETA " << clockText(eta);
            } else {
                line << "epoch " << e.epoch + 1 << "/" << epochs << "  validation  loss " << std::setprecision(4)
                     << e.loss << "  top-1 " << percent(e.top1.value_or(0)) << "  top-5 "
                     << percent(e.top5.value_or(0));
                if (e.emaTop1)
                    line << "  (EMA: loss " << std::setprecision(4) << *e.emaLoss << "  top-1 " << percent(*e.emaTop1)
                         << "  top-5 " << percent(e.emaTop5.value_or(0)) << ")";
            }
            std::cout << line.str() << std::endl;
        };
        auto result = trainer.run(&g_stopRequested, report);
        if (rank == 0) {
            if (result.completed)
                log << "fec train: done, " << result.steps << " steps"
                    << (result.bestTop1 >= 0
                            ? ", best top-1 " + percent(result.bestTop1) + " (" + result.bestCheckpoint + ")"
                            : std::string())
                    << "; last checkpoint " << result.lastCheckpoint << "\n";
            else
                log << "fec train: stopped at step " << result.steps << " of " << total << "; checkpoint "
                    << result.lastCheckpoint << "; continue with: fec train --resume --out " << m_out << "\n";
        }
        return 0;
    }

    int launch()
    {
        if (!train::glooAvailable())
            throw std::invalid_argument(
                "--nproc-per-node: this build of fec has no multi-process support (Gloo headers were missing at build "
                "time: install libgloo-dev and rebuild)");
        auto args = processArguments();
        if (args.empty())
            throw std::runtime_error("cannot read this process's command line");
        train::LaunchOptions launch = m_launch;
        launch.runDir = m_out;  // the launcher owns the folder while the ranks run
        if (!hasThreadsOption()) {
            const int cores = defaultThreadCount();
            const int per = std::max(1, cores / std::max(1, launch.nprocPerNode));
            args.insert(args.begin() + 1, {"--threads", std::to_string(per)});
            launch.threadsPerProcess = per;
        }
        return train::launchWorkers(args, launch, std::cerr);
    }

    // The options as the trainer would receive them (with --resume: as run.json gives them).
    int dryRun()
    {
        DataSpec data = m_data;
        const auto o = effectiveOptions(data);
        json j = recordedData(data);
        j["options"] = json::parse(train::optionsToJson(o));
        j["out"] = o.outDir;
        j["resume"] = o.resume;
        std::cout << j.dump(2) << "\n";
        return 0;
    }

    int runBench()
    {
        const auto o = givenOptions();
        auto config = architecture();
        if (config.numClasses <= 0)
            config.numClasses = 1000;
        const auto device = selectDevice(o.device);
        const auto r = train::benchmarkTraining(config, o.size, o.batch, m_benchSteps, m_benchWarmup, o.emaDecay,
                                                o.dropPath, device);
        if (m_json) {
            json j;
            j["arch"] = config.variant;
            j["size"] = o.size;
            j["batch"] = o.batch;
            j["threads"] = r.threads;
            j["device"] = device.str();
            j["steps"] = m_benchSteps;
            j["seconds_per_step_median"] = r.medianSeconds;
            j["seconds_per_step_min"] = r.minSeconds;
            j["seconds_per_step_max"] = r.maxSeconds;
            j["images_per_s"] = r.imagesPerSecond;
            std::cout << j.dump() << std::endl;
        } else {
            std::cout << std::fixed << std::setprecision(3) << "Training step (forward, backward, AdamW"
                      << (o.emaDecay > 0 ? ", EMA" : "") << ") of " << config.variant << " at " << o.size << "x"
                      << o.size << ", batch " << o.batch << ", "
                      << (device.is_cpu() ? std::to_string(r.threads) + " threads" : device.str()) << ", median of "
                      << m_benchSteps << ": " << r.medianSeconds << " s/step (min " << r.minSeconds << ", max "
                      << r.maxSeconds << "), " << std::setprecision(1) << r.imagesPerSecond << " images/s\n";
        }
        return 0;
    }

    std::vector<std::string> m_optionText;  ///< the value given to each flag of trainOptionTable()
    DataSpec m_data;
    std::string m_out, m_arch = "fec_small", m_configFile;
    std::string m_layers, m_dims, m_heads, m_headDims, m_mlpRatios, m_proposals;
    bool m_noAugment = false, m_json = false, m_bench = false, m_dryRun = false;
    int m_benchSteps = 10, m_benchWarmup = 2;
    int m_distTimeout = 60;
    train::LaunchOptions m_launch;
};

class EvalCommand : public Command {
public:
    explicit EvalCommand(CLI::App& parent)
        : Command(parent.add_subcommand("eval", "top-1 / top-5 accuracy and loss of a checkpoint on a dataset"))
    {
        auto& a = *m_app;
        addModelOptions(a, m_model, true);
        a.add_option("--data", m_data,
                     "an image folder (ROOT/<class>/<image> or ROOT/<split>/...) or the Fashion-MNIST folder")
            ->required();
        a.add_option("--split", m_split, "test, val or train (Fashion-MNIST: test and val are the t10k files)")
            ->check(CLI::IsMember({"test", "val", "train"}))
            ->capture_default_str();
        a.add_option("--size", m_size, "input side (default: stored in the checkpoint, else 224)");
        a.add_option("--batch", m_batch, "images per batch")->check(CLI::Range(1, 65536))->capture_default_str();
        a.add_option("--workers", m_workers, "loader threads")->check(CLI::Range(0, 64))->capture_default_str();
        a.add_option("--limit", m_limit, "evaluate only the first N images (Fashion-MNIST) or a seeded subset of N");
        a.add_option("--eval-resize", m_resize, "squash or crop (default: stored in the checkpoint)")
            ->check(CLI::IsMember({"squash", "crop"}));
        a.add_option("--confusion", m_confusion, "write the confusion matrix (rows true, columns predicted) as CSV");
        a.add_flag("--json", m_json, "machine-readable output");
#ifdef FEC_WITH_IMAGING
        a.add_flag("--segmentation-iou", m_segmentation,
                   "does segmentation emerge? Mean IoU with the object mask (pixels > 0) of the better segment of "
                   "a K-means k=2 merge of the last level (key centres and representatives), for this model and "
                   "the same architecture untrained, with the best possible 2-way merge and the whole image");
        a.add_option("--untrained-seed", m_untrainedSeed,
                     "initialisation seed of the untrained model (--segmentation-iou)")
            ->capture_default_str();
        a.add_flag("--faithfulness", m_faithfulness,
                   "are saliency maps faithful? Deletion / insertion AUC, ROAD and segment deletion for FEC's exact "
                   "evidence, ablation, Grad-CAM, HiResCAM, gradient x input and random order (default --limit 500)");
        a.add_option("--steps", m_steps, "--faithfulness: N equal deletion / insertion steps, or pixels:N per step")
            ->capture_default_str();
        a.add_flag("--no-road", m_noRoad, "--faithfulness: skip ROAD (the slowest metric)");
        a.add_option("--random-seeds", m_randomSeeds, "--faithfulness: random orders averaged")
            ->check(CLI::Range(1, 100))
            ->capture_default_str();
#endif
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        auto loaded = loadModel(m_model, &device);
        const auto& info = loaded.info;
        const auto& cfg = info.inferred.config;
        if (cfg.numClasses <= 0)
            throw std::invalid_argument(m_model.checkpoint + ": a dense-prediction backbone has no classifier");
        auto data = openData(info.classNames);
        const auto classes = static_cast<int>(data->classNames().size());
        if (classes != cfg.numClasses)
            throw std::invalid_argument(m_model.checkpoint + " has " + std::to_string(cfg.numClasses) +
                                        " classes but " + data->description() + " has " + std::to_string(classes));
        train::EvalOptions e;
        e.size = inputSizeFor(info, m_size);
        cfg.checkInputSize(e.size, e.size);
        e.batch = m_batch;
        e.workers = m_workers;
        e.resize = train::parseEvalResize(!m_resize.empty()          ? m_resize
                                          : !info.preprocess.empty() ? info.preprocess
                                                                     : data->preprocess());
        e.confusion = !m_confusion.empty();
#ifdef FEC_WITH_IMAGING
        if (m_segmentation)
            return runSegmentation(loaded, *data, e, device);
        if (m_faithfulness)
            return runFaithfulness(loaded, *data, e);
#endif
        const auto r = train::evaluate(*loaded.model, *data, e);
        const auto names = data->classNames();
        if (e.confusion)
            writeConfusion(r.confusion, names);
        if (m_json) {
            json j;
            j["checkpoint"] = printablePath(m_model.checkpoint);
            j["weights"] = weightsDescription(info);
            j["data"] = printable(data->description());
            j["images"] = r.count;
            j["size"] = e.size;
            j["resize"] = e.resize == train::EvalResize::Squash ? "squash" : "crop";
            j["top1"] = r.top1;
            j["top5"] = r.top5;
            j["loss"] = r.loss;
            if (e.confusion)
                j["confusion_csv"] = printablePath(m_confusion);
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(info) << "), "
                  << cfg.numClasses << " classes, " << e.size << "x" << e.size << " "
                  << (e.resize == train::EvalResize::Squash ? "squash" : "crop") << "\n"
                  << "Data  " << printable(data->description()) << "\n"
                  << std::fixed << std::setprecision(2) << "top-1: " << r.top1 << "%  top-5: " << r.top5
                  << "%  loss: " << std::setprecision(4) << r.loss << "  (" << r.count << " images)\n";
        if (e.confusion)
            std::cout << "Confusion matrix (rows: true class, columns: predicted) written to "
                      << printablePath(m_confusion) << "\n";
        return 0;
    }

private:
#ifdef FEC_WITH_IMAGING
    int runSegmentation(LoadedModel& loaded, const train::Dataset& data, const train::EvalOptions& e,
                        const c10::Device& device) const
    {
        const auto& info = loaded.info;
        at::manual_seed(m_untrainedSeed);
        FecModel untrained(info.inferred.config);
        untrained->to(device);
        int64_t reported = 0;
        auto progress = [&](int64_t done, int64_t total) {
            if (!m_json && done - reported >= std::max<int64_t>(1, total / 10)) {
                std::cerr << "segmentation: " << done << "/" << total << " images\n";
                reported = done;
            }
        };
        const auto r =
            explain::segmentationScores(*loaded.model, *untrained, data, e.size, e.resize, e.batch, progress);
        if (m_json) {
            auto row = [](const explain::SegmentationRow& s) {
                json j;
                j["key_centres"] = s.keyCentres;
                j["representatives"] = s.representatives;
                j["upper_bound"] = s.upperBound;
                j["mean_final_clusters"] = s.meanClusters;
                return j;
            };
            json j;
            j["checkpoint"] = printablePath(m_model.checkpoint);
            j["weights"] = weightsDescription(info);
            j["data"] = printable(data.description());
            j["images"] = r.images;
            j["size"] = r.size;
            j["resize"] = e.resize == train::EvalResize::Squash ? "squash" : "crop";
            j["top1"] = r.top1;
            json seg;
            seg["k"] = 2;
            seg["trained"] = row(r.trained);
            seg["untrained"] = row(r.untrained);
            seg["untrained_seed"] = m_untrainedSeed;
            seg["whole_image"] = r.wholeImage;
            j["segmentation_iou"] = seg;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(info) << "), " << r.size
                  << "x" << r.size << ", top-1 " << std::fixed << std::setprecision(2) << r.top1
                  << "% on these images\n"
                  << "Data  " << printable(data.description()) << "\n"
                  << "Segmentation IoU with the object mask (pixels > 0), mean over " << r.images
                  << " images; K-means k=2 on the last level, the better segment:\n"
                  << std::setprecision(3) << std::string(18, ' ') << std::setw(13) << "key centres" << std::setw(17)
                  << "representatives" << std::setw(18) << "best 2-way merge" << std::setw(16) << "final clusters"
                  << "\n";
        auto line = [](const char* name, const explain::SegmentationRow& s) {
            std::cout << name << std::setw(13) << s.keyCentres << std::setw(17) << s.representatives << std::setw(18)
                      << s.upperBound << std::setw(16) << std::setprecision(1) << s.meanClusters << std::setprecision(3)
                      << "\n";
        };
        line("  trained         ", r.trained);
        line("  untrained (seed)", r.untrained);
        std::cout << "  whole image (baseline): " << r.wholeImage << "\n";
        return 0;
    }
#endif

#ifdef FEC_WITH_IMAGING
    int runFaithfulness(LoadedModel& loaded, const train::Dataset& data, const train::EvalOptions& e) const
    {
        explain::FaithfulnessOptions o;
        if (m_steps.rfind("pixels:", 0) == 0) {
            o.pixelsPerStep = std::stoll(m_steps.substr(7));
            if (o.pixelsPerStep < 1)
                throw std::invalid_argument("--steps pixels:N needs N >= 1");
        } else {
            o.steps = std::stoi(m_steps);
            if (o.steps < 1)
                throw std::invalid_argument("--steps needs N >= 1 or pixels:N");
        }
        o.road = !m_noRoad;
        o.randomSeeds = m_randomSeeds;
        SignalScope signals;
        const auto started = std::chrono::steady_clock::now();
        // A terminal gets one line rewritten in place; a log gets a line per image.
        const bool tty = ::isatty(STDERR_FILENO);
        auto progress = [&](int64_t done, int64_t total) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            const double eta = elapsed / static_cast<double>(done) * static_cast<double>(total - done);
            std::cerr << (tty ? "\r" : "") << "faithfulness: " << done << "/" << total << " images, "
                      << clockText(elapsed) << " elapsed, ETA " << clockText(eta) << (tty ? "   " : "\n") << std::flush;
        };
        const auto r =
            explain::faithfulnessScores(*loaded.model, data, e.size, e.resize, o, progress, &g_stopRequested);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (tty && r.images > 0)
            std::cerr << "\n";
        if (g_stopRequested)
            std::cerr << "faithfulness: interrupted after " << r.images << " images\n";
        if (m_json) {
            auto stat = [](const explain::MetricStats& s) { return json{{"mean", s.mean}, { "sem", s.sem }}; };
            json j;
            j["checkpoint"] = printablePath(m_model.checkpoint);
            j["weights"] = weightsDescription(loaded.info);
            j["data"] = printable(data.description());
            j["images"] = r.images;
            j["size"] = r.size;
            j["steps"] = r.steps;
            j["top1"] = r.top1;
            j["seconds"] = seconds;
            json methods;
            for (const auto& m : r.methods) {
                json row;
                row["deletion_auc"] = stat(m.deletion);
                row["insertion_auc"] = stat(m.insertion);
                if (r.road) {
                    row["road_morf"] = stat(m.roadMorf);
                    row["road_lerf"] = stat(m.roadLerf);
                    row["road_score"] = stat(m.roadScore);
                }
                row["segment_deletion_auc"] = stat(m.segmentDeletion);
                methods[m.name] = row;
            }
            j["methods"] = methods;
            j["segment_deletion_by_ablation_auc"] = stat(r.segmentDeletionByAblation);
            j["spearman"] = {{"mean", r.spearmanMean},
                             {"median", r.spearmanMedian},
                             {"q1", r.spearmanQ1},
                             {"q3", r.spearmanQ3},
                             { "images",
                               r.spearmanImages }};
            j["hirescam_vs_evidence_max_abs_diff"] = r.hiresMaxDiff;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << printablePath(m_model.checkpoint) << " (" << weightsLine(loaded.info) << "), "
                  << r.size << "x" << r.size << ", top-1 " << std::fixed << std::setprecision(2) << r.top1
                  << "% on these images\n"
                  << "Data  " << printable(data.description()) << "\n"
                  << "Faithfulness over " << r.images << " images (" << r.steps << " steps; mean +- s.e.; "
                  << std::setprecision(1) << seconds << " s)\n"
                  << "Lower is better: deletion, ROAD MoRF, segment deletion. Higher is better: insertion, ROAD LeRF, "
                  << "ROAD score\n"
                  << std::setprecision(3);
        auto cell = [](const explain::MetricStats& s) {
            std::ostringstream o;
            o << std::fixed << std::setprecision(3) << s.mean << " +- " << s.sem;
            return o.str();
        };
        std::cout << std::left << std::setw(14) << "method" << std::setw(17) << "deletion AUC" << std::setw(17)
                  << "insertion AUC";
        if (r.road)
            std::cout << std::setw(17) << "ROAD MoRF" << std::setw(17) << "ROAD LeRF" << std::setw(17) << "ROAD score";
        std::cout << "segment del. AUC\n";
        for (const auto& m : r.methods) {
            std::cout << std::setw(14) << m.name << std::setw(17) << cell(m.deletion) << std::setw(17)
                      << cell(m.insertion);
            if (r.road)
                std::cout << std::setw(17) << cell(m.roadMorf) << std::setw(17) << cell(m.roadLerf) << std::setw(17)
                          << cell(m.roadScore);
            std::cout << cell(m.segmentDeletion) << "\n";
        }
        std::cout << std::right << "Segment deletion in the order of each final segment's own ablation effect: "
                  << cell(r.segmentDeletionByAblation) << "\n"
                  << "Spearman (final segments: direct contribution vs ablation effect) over " << r.spearmanImages
                  << " images: mean " << r.spearmanMean << ", median " << r.spearmanMedian << ", quartiles "
                  << r.spearmanQ1 << " .. " << r.spearmanQ3 << "\n"
                  << "HiResCAM per final position vs exact evidence: max |difference| " << std::scientific
                  << std::setprecision(2) << r.hiresMaxDiff << "\n";
        return 0;
    }
#endif

    train::DatasetPtr openData(const std::vector<std::string>& storedNames) const
    {
        const auto limit = m_faithfulness && m_limit == 0 ? int64_t{500} : m_limit;
        return openDataset(m_data, m_split, limit, storedNames);
    }

    void writeConfusion(const at::Tensor& confusion, const std::vector<std::string>& names) const
    {
        auto quote = [](const std::string& s) {
            if (s.find_first_of(",\"\n") == std::string::npos)
                return s;
            std::string q = "\"";
            for (char c : s)
                q += c == '"' ? std::string("\"\"") : std::string(1, c);
            return q + "\"";
        };
        std::ostringstream csv;
        csv << "true\\predicted";
        for (const auto& n : names)
            csv << "," << quote(printable(n));
        csv << "\n";
        auto counts = confusion.contiguous();
        const auto* p = counts.data_ptr<int64_t>();
        const auto c = static_cast<int64_t>(names.size());
        for (int64_t i = 0; i < c; ++i) {
            csv << quote(printable(names[static_cast<size_t>(i)]));
            for (int64_t j = 0; j < c; ++j)
                csv << "," << p[i * c + j];
            csv << "\n";
        }
        writeFileAtomic(m_confusion, csv.str());
    }

    ModelOptions m_model;
    std::string m_data, m_split = "test", m_resize, m_confusion;
    int m_size = 0, m_batch = 64, m_workers = 2;
    int64_t m_limit = 0;
    bool m_json = false, m_segmentation = false, m_faithfulness = false, m_noRoad = false;
    uint64_t m_untrainedSeed = 0;
    std::string m_steps = "32";
    int m_randomSeeds = 5;
};

// `fec export`: a weights-only checkpoint for sharing or shipping (no optimizer, scheduler or RNG
// state): the chosen weights as state_dict, with the architecture, class names, input size and
// preprocessing the source recorded.
class ExportCommand : public Command {
public:
    explicit ExportCommand(CLI::App& parent)
        : Command(parent.add_subcommand("export", "write a weights-only copy of a checkpoint (timm layout)"))
    {
        auto& a = *m_app;
        addModelOptions(a, m_model, true);
        a.add_option("--out,-o", m_out, "the checkpoint to write (.pth.tar)")->required();
        a.add_option("--size", m_size, "input size to record (default: the source's)");
        a.add_option("--preprocess", m_preprocess, "squash or crop to record (default: the source's)")
            ->check(CLI::IsMember({"squash", "crop"}));
    }

    int run() override
    {
        c10::Device device(c10::kCPU);
        ModelOptions options = m_model;
        options.device = "cpu";
        auto loaded = loadModel(options, &device);
        const auto& info = loaded.info;
        SaveOptions save;
        for (const auto& [key, value] : info.extras)
            if (key == "epoch")
                save.epoch = std::atoi(value.c_str());
        save.classNames = info.classNames;
        save.inputSize = m_size > 0 ? m_size : info.inputSize;
        save.preprocess = !m_preprocess.empty() ? m_preprocess : info.preprocess;
        saveCheckpoint(m_out, *loaded.model, save);
        std::error_code ec;
        const auto bytes = fs::file_size(m_out, ec);
        std::cout << "Wrote " << m_out << " (" << (ec ? 0 : bytes) << " bytes): " << weightsDescription(info) << " of "
                  << m_model.checkpoint << ", " << loaded.model->parameterCount() << " parameters"
                  << (save.inputSize > 0 ? ", input " + std::to_string(save.inputSize) : std::string())
                  << (save.preprocess.empty() ? std::string() : " " + save.preprocess) << "\n";
        return 0;
    }

private:
    ModelOptions m_model;
    std::string m_out, m_preprocess;
    int m_size = 0;
};

}  // namespace

void addTrainCommands(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
    commands.push_back(std::make_unique<TrainCommand>(app));
    commands.push_back(std::make_unique<EvalCommand>(app));
    commands.push_back(std::make_unique<ExportCommand>(app));
}

}  // namespace fec::cli
