// `fec train` (single process, a rank of a c10d job, or the launcher of one) and `fec eval`.

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "fec/atomic_file.h"
#include "fec/runtime.h"
#include "fec/train/distributed.h"
#include "fec/train/trainer.h"
#ifdef FEC_WITH_IMAGING
#include "fec/imaging/image_folder.h"
#include "segmentation_eval.h"
#endif

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace fec::cli {

namespace {

std::atomic<bool> g_stopRequested{false};
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

class SignalScope {
public:
    SignalScope()
    {
        g_stopRequested = false;
        g_signals = 0;
        struct sigaction action {};
        action.sa_handler = onStopSignal;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &m_int);
        sigaction(SIGTERM, &action, &m_term);
    }
    ~SignalScope()
    {
        sigaction(SIGINT, &m_int, nullptr);
        sigaction(SIGTERM, &m_term, nullptr);
    }

private:
    struct sigaction m_int {
    }, m_term{};
};

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

std::string percent(double v)
{
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << v << "%";
    return s.str();
}

std::string duration(double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8)
        return "?";
    const auto s = static_cast<long long>(seconds + 0.5);
    std::ostringstream out;
    out << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
    return out.str();
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
        if (imaging::ImageFolder::looksLikeImageFolder((fs::path(root) / "train").string())) {
            root = (fs::path(root) / "train").string();
            const auto valRoot = (fs::path(spec.data) / "val").string();
            if (imaging::ImageFolder::looksLikeImageFolder(valRoot))
                defaultVal = valRoot;
        }
        if (!imaging::ImageFolder::looksLikeImageFolder(root))
            throw std::invalid_argument("--data " + spec.data +
                                        ": neither Fashion-MNIST IDX files nor an image folder (ROOT/<class>/<image>)");
        trainSet = train::limitDataset(std::make_shared<imaging::ImageFolder>(root), spec.trainLimit, seed);
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
                valSet = train::limitDataset(std::make_shared<imaging::ImageFolder>(valPath, trainSet->classNames()),
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
        a.add_option("--checkpoint,-c", m_o.checkpoint,
                     "start from this checkpoint (fine-tuning; a new head when the classes differ)");
        a.add_option("--weights", m_weights, "weights of --checkpoint: auto (EMA when present), state_dict or ema")
            ->check(CLI::IsMember({"auto", "state_dict", "ema"}));
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
        a.add_option("--size", m_o.size, "input side in pixels (a multiple of 32)")->capture_default_str();
        a.add_option("--epochs", m_o.epochs, "epochs")->check(CLI::Range(1, 100000))->capture_default_str();
        a.add_option("--max-steps", m_o.maxSteps, "stop after N optimizer steps (the schedule ends there; 0: no limit)")
            ->capture_default_str();
        a.add_option("--batch", m_o.batch, "images per process and micro-batch")
            ->check(CLI::Range(1, 65536))
            ->capture_default_str();
        a.add_option("--accum", m_o.accum, "micro-batches per optimizer step (gradient accumulation)")
            ->check(CLI::Range(1, 4096))
            ->capture_default_str();
        a.add_option("--lr", m_o.lr, "peak learning rate (the authors: 1e-3 at a global batch of 1024)")
            ->capture_default_str();
        a.add_option("--min-lr", m_o.minLr, "learning rate at the end of the cosine")->capture_default_str();
        a.add_option("--warmup-lr", m_o.warmupLr, "learning rate at the start of the warm-up")->capture_default_str();
        a.add_option("--warmup-epochs", m_o.warmupEpochs, "linear warm-up length in epochs")->capture_default_str();
        a.add_option("--weight-decay", m_o.weightDecay,
                     "AdamW weight decay (not on norms, biases, layer scales, sim_alpha/beta)")
            ->capture_default_str();
        a.add_option("--clip", m_o.clipGrad, "clip the gradient norm to this value (0: off)")->capture_default_str();
        a.add_option("--ema", m_o.emaDecay, "keep an EMA of the weights with this decay, e.g. 0.9998 (0: off)")
            ->capture_default_str();
        a.add_option("--drop-path", m_o.dropPath, "stochastic depth rate of the last block (linear from 0)")
            ->capture_default_str();
        a.add_option("--smoothing", m_o.mix.smoothing, "label smoothing")->capture_default_str();
        a.add_option("--mixup", m_o.mix.mixupAlpha, "MixUp alpha (0: off; the authors: 0.8)")->capture_default_str();
        a.add_option("--cutmix", m_o.mix.cutmixAlpha, "CutMix alpha (0: off; the authors: 1.0)")->capture_default_str();
        a.add_option("--reprob", m_o.augment.eraseProb, "random erasing probability (0: off; the authors: 0.25)")
            ->capture_default_str();
        a.add_option("--hflip", m_o.augment.hflip, "horizontal flip probability")->capture_default_str();
        a.add_option("--crop-scale", m_o.augment.scaleMin, "smallest random-resized-crop area fraction")
            ->capture_default_str();
        a.add_flag("--no-augment", m_noAugment, "no crop, flip, erasing or mixing: resize only");
        a.add_option("--eval-resize", m_o.evalResize,
                     "validation resize: squash or crop (default: squash for Fashion-MNIST, else crop)")
            ->check(CLI::IsMember({"squash", "crop"}));
        a.add_option("--freeze-stages", m_freeze, "comma-separated stages (0-3) whose weights stay fixed");
        a.add_option("--seed", m_o.seed, "seed of initialisation, data order and augmentation")->capture_default_str();
        a.add_flag("--resume", m_o.resume,
                   "continue the run in --out from last.pth.tar (its settings unless given again)");
        a.add_option("--workers", m_o.workers, "loader threads per process")
            ->check(CLI::Range(0, 64))
            ->capture_default_str();
        a.add_option("--log-every", m_o.logEvery, "optimizer steps between train metric lines")
            ->check(CLI::Range(1, 1000000))
            ->capture_default_str();
        a.add_flag("--no-tensorboard", m_noTensorboard, "do not write TensorBoard event files");
        a.add_option("--device", m_o.device, "cpu, cuda or auto")->capture_default_str();
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
            const auto device = selectDevice(m_o.device);
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
            c = FecConfig::fromJson(text.str());
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
        c.validate();
        return c;
    }

    // Options of this invocation; with --resume, the stored ones overridden by flags given again.
    train::TrainOptions effectiveOptions(DataSpec& data)
    {
        train::TrainOptions o = m_o;
        o.config = architecture();
        o.weights = parseWeightsChoice(m_weights);
        if (!m_freeze.empty())
            o.freezeStages = parseList<int>(m_freeze, "--freeze-stages");
        if (m_noAugment) {
            o.augment.randomCrop = false;
            o.augment.hflip = 0;
            o.augment.eraseProb = 0;
            o.mix.mixupAlpha = o.mix.cutmixAlpha = 0;
        }
        o.tensorboard = !m_noTensorboard;
        if (m_out.empty())
            throw std::invalid_argument("--out is required");
        o.outDir = m_out;
        if (!o.resume)
            return o;

        const auto runJson = (fs::path(m_out) / "run.json").string();
        std::ifstream in(runJson);
        if (!in)
            return o; // the trainer reports a missing last.pth.tar
        json run = json::parse(in, nullptr, false);
        if (run.is_discarded() || !run.contains("options"))
            throw std::invalid_argument(runJson + ": not a run description");
        train::TrainOptions stored;
        train::optionsFromJson(run["options"].dump(), stored);
        // Run-length and housekeeping flags given now win; the recipe stays as the run started.
        auto given = [&](const char* flag) { return m_app->count(flag) > 0; };
        train::TrainOptions r = stored;
        r.resume = true;
        r.outDir = m_out;
        r.tensorboard = given("--no-tensorboard") ? false : stored.tensorboard;
        r.epochs = given("--epochs") ? o.epochs : stored.epochs;
        r.maxSteps = given("--max-steps") ? o.maxSteps : stored.maxSteps;
        r.workers = given("--workers") ? o.workers : stored.workers;
        r.logEvery = given("--log-every") ? o.logEvery : stored.logEvery;
        r.device = given("--device") ? o.device : stored.device;
        for (const char* flag :
             {"--size",          "--batch",         "--accum",      "--lr",         "--min-lr",     "--warmup-lr",
              "--warmup-epochs", "--weight-decay",  "--clip",       "--ema",        "--drop-path",  "--smoothing",
              "--mixup",         "--cutmix",        "--reprob",     "--hflip",      "--crop-scale", "--seed",
              "--eval-resize",   "--freeze-stages", "--no-augment", "--checkpoint", "--arch",       "--config",
              "--layers",        "--dims"})
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
        json command;
        command["data"] = data.data.empty() ? data.data : fs::absolute(data.data).string();
        command["val"] = data.val.empty() ? data.val : fs::absolute(data.val).string();
        command["val_split"] = data.valSplit;
        command["train_limit"] = data.trainLimit;
        command["val_limit"] = data.valLimit;
        command["argv"] = processArguments();
        o.argsJson = command.dump();

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
                line << "  " << std::setprecision(1) << e.imagesPerSecond << " images/s  ETA " << duration(eta);
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
        if (!hasThreadsOption()) {
            const int cores = defaultThreadCount();
            const int per = std::max(1, cores / std::max(1, launch.nprocPerNode));
            args.insert(args.begin() + 1, {"--threads", std::to_string(per)});
            launch.threadsPerProcess = per;
        }
        return train::launchWorkers(args, launch, std::cerr);
    }

    int runBench()
    {
        auto config = architecture();
        if (config.numClasses <= 0)
            config.numClasses = 1000;
        const auto device = selectDevice(m_o.device);
        const auto r = train::benchmarkTraining(config, m_o.size, m_o.batch, m_benchSteps, m_benchWarmup, m_o.emaDecay,
                                                m_o.dropPath, device);
        if (m_json) {
            json j;
            j["arch"] = config.variant;
            j["size"] = m_o.size;
            j["batch"] = m_o.batch;
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
                      << (m_o.emaDecay > 0 ? ", EMA" : "") << ") of " << config.variant << " at " << m_o.size << "x"
                      << m_o.size << ", batch " << m_o.batch << ", "
                      << (device.is_cpu() ? std::to_string(r.threads) + " threads" : device.str()) << ", median of "
                      << m_benchSteps << ": " << r.medianSeconds << " s/step (min " << r.minSeconds << ", max "
                      << r.maxSeconds << "), " << std::setprecision(1) << r.imagesPerSecond << " images/s\n";
        }
        return 0;
    }

    train::TrainOptions m_o;
    DataSpec m_data;
    std::string m_out, m_weights = "auto", m_arch = "fec_small", m_configFile;
    std::string m_layers, m_dims, m_heads, m_headDims, m_mlpRatios, m_proposals, m_freeze;
    bool m_noAugment = false, m_noTensorboard = false, m_json = false, m_bench = false;
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
        a.add_option("--untrained-seed", m_untrainedSeed, "initialisation seed of the untrained model (--segmentation-iou)")
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
        e.size = m_size > 0 ? m_size : (info.inputSize > 0 ? info.inputSize : 224);
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
#endif
        const auto r = train::evaluate(*loaded.model, *data, e);
        const auto names = data->classNames();
        if (e.confusion)
            writeConfusion(r.confusion, names);
        if (m_json) {
            json j;
            j["checkpoint"] = m_model.checkpoint;
            j["weights"] = info.weights;
            j["data"] = data->description();
            j["images"] = r.count;
            j["size"] = e.size;
            j["resize"] = e.resize == train::EvalResize::Squash ? "squash" : "crop";
            j["top1"] = r.top1;
            j["top5"] = r.top5;
            j["loss"] = r.loss;
            if (e.confusion)
                j["confusion_csv"] = m_confusion;
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        std::cout << "Model " << m_model.checkpoint << " (" << weightsLine(info) << "), " << cfg.numClasses
                  << " classes, " << e.size << "x" << e.size << " "
                  << (e.resize == train::EvalResize::Squash ? "squash" : "crop") << "\n"
                  << "Data  " << data->description() << "\n"
                  << std::fixed << std::setprecision(2) << "top-1: " << r.top1 << "%  top-5: " << r.top5
                  << "%  loss: " << std::setprecision(4) << r.loss << "  (" << r.count << " images)\n";
        if (e.confusion)
            std::cout << "Confusion matrix (rows: true class, columns: predicted) written to " << m_confusion << "\n";
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
        const auto r = segmentationScores(*loaded.model, *untrained, data, e.size, e.resize, e.batch, progress);
        if (m_json) {
            auto row = [](const SegmentationRow& s) {
                json j;
                j["key_centres"] = s.keyCentres;
                j["representatives"] = s.representatives;
                j["upper_bound"] = s.upperBound;
                j["mean_final_clusters"] = s.meanClusters;
                return j;
            };
            json j;
            j["checkpoint"] = m_model.checkpoint;
            j["weights"] = info.weights;
            j["data"] = data.description();
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
        std::cout << "Model " << m_model.checkpoint << " (" << weightsLine(info) << "), " << r.size << "x" << r.size
                  << ", top-1 " << std::fixed << std::setprecision(2) << r.top1 << "% on these images\n"
                  << "Data  " << data.description() << "\n"
                  << "Segmentation IoU with the object mask (pixels > 0), mean over " << r.images
                  << " images; K-means k=2 on the last level, the better segment:\n"
                  << std::setprecision(3) << std::string(18, ' ') << std::setw(13) << "key centres" << std::setw(17)
                  << "representatives" << std::setw(18) << "best 2-way merge" << std::setw(16) << "final clusters" << "\n";
        auto line = [](const char* name, const SegmentationRow& s) {
            std::cout << name << std::setw(13) << s.keyCentres << std::setw(17) << s.representatives << std::setw(18)
                      << s.upperBound << std::setw(16) << std::setprecision(1) << s.meanClusters
                      << std::setprecision(3) << "\n";
        };
        line("  trained         ", r.trained);
        line("  untrained (seed)", r.untrained);
        std::cout << "  whole image (baseline): " << r.wholeImage << "\n";
        return 0;
    }
#endif

    train::DatasetPtr openData(const std::vector<std::string>& storedNames) const
    {
        using train::FashionMnist;
        if (!isDirectory(m_data))
            throw std::invalid_argument("--data " + m_data + ": not a folder");
        if (FashionMnist::detect(m_data))
            return std::make_shared<FashionMnist>(
                m_data, m_split == "train" ? FashionMnist::Split::Train : FashionMnist::Split::Test, m_limit);
#ifdef FEC_WITH_IMAGING
        std::string root = m_data;
        const auto candidate = (fs::path(m_data) / m_split).string();
        if (imaging::ImageFolder::looksLikeImageFolder(candidate))
            root = candidate;
        else if (m_split == "test" && imaging::ImageFolder::looksLikeImageFolder((fs::path(m_data) / "val").string()))
            root = (fs::path(m_data) / "val").string();
        if (!imaging::ImageFolder::looksLikeImageFolder(root))
            throw std::invalid_argument("--data " + m_data + ": neither Fashion-MNIST IDX files nor an image folder");
        return train::limitDataset(std::make_shared<imaging::ImageFolder>(root, storedNames), m_limit, 0);
#else
        (void)storedNames;
        throw std::invalid_argument("--data " + m_data + ": no Fashion-MNIST IDX files there");
#endif
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
            csv << "," << quote(n);
        csv << "\n";
        auto counts = confusion.contiguous();
        const auto* p = counts.data_ptr<int64_t>();
        const auto c = static_cast<int64_t>(names.size());
        for (int64_t i = 0; i < c; ++i) {
            csv << quote(names[static_cast<size_t>(i)]);
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
    bool m_json = false, m_segmentation = false;
    uint64_t m_untrainedSeed = 0;
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
        std::cout << "Wrote " << m_out << " (" << (ec ? 0 : bytes) << " bytes): " << info.weights << " of "
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

} // namespace

void addTrainCommands(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands)
{
    commands.push_back(std::make_unique<TrainCommand>(app));
    commands.push_back(std::make_unique<EvalCommand>(app));
    commands.push_back(std::make_unique<ExportCommand>(app));
}

} // namespace fec::cli
