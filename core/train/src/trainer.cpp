#include "fec/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "fec/atomic_file.h"
#include "fec/pickle.h"
#include "fec/runtime.h"
#include "fec/train/distributed.h"
#include "fec/train/loader.h"
#include "fec/train/optim.h"
#include "fec/train/random.h"
#include "fec/train/run_lock.h"
#include "fec/train/tfevents.h"

namespace fs = std::filesystem;

namespace fec::train {

namespace {

using json = nlohmann::ordered_json;
using pickle::Value;
using pickle::ValuePtr;

// Distinct streams of the counter-based randomness (see random.h).
constexpr uint64_t kInitStream = 0x1417;
constexpr uint64_t kDropPathStream = 0xd209;
constexpr uint64_t kMixStream = 0x3171;
constexpr uint64_t kSampleStream = 0x5a3b;

double unixNow()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string resizeName(EvalResize r)
{
    return r == EvalResize::Squash ? "squash" : "crop";
}

json eventJson(const TrainEvent& e)
{
    json j;
    j["phase"] = e.phase;
    j["epoch"] = e.epoch;
    j["step"] = e.step;
    j["total_steps"] = e.totalSteps;
    j["loss"] = e.loss;
    j["lr"] = e.lr;
    if (e.top1)
        j["top1"] = *e.top1;
    if (e.top5)
        j["top5"] = *e.top5;
    if (e.emaLoss)
        j["ema_loss"] = *e.emaLoss;
    if (e.emaTop1)
        j["ema_top1"] = *e.emaTop1;
    if (e.emaTop5)
        j["ema_top5"] = *e.emaTop5;
    j["images_per_s"] = e.imagesPerSecond;
    j["time"] = e.time;
    j["elapsed_s"] = e.elapsed;
    return j;
}

// Soft-target cross-entropy (timm's SoftTargetCrossEntropy): mean over the batch.
at::Tensor softCrossEntropy(const at::Tensor& logits, const at::Tensor& targets)
{
    return -(targets * at::log_softmax(logits, 1)).sum(1).mean();
}

ValuePtr intList(const std::vector<int>& v)
{
    auto l = Value::list();
    for (int x : v)
        l->items.push_back(Value::integer(x));
    return l;
}

int64_t intEntry(const ValuePtr& dict, const std::string& key, const std::string& path)
{
    auto v = dict ? dict->get(key) : nullptr;
    if (!v || v->kind != Value::Kind::Int)
        throw CheckpointError(path + ": cannot resume: '" + key + "' missing from the training state");
    return v->i;
}

double realEntry(const ValuePtr& dict, const std::string& key, double fallback)
{
    auto v = dict ? dict->get(key) : nullptr;
    if (!v)
        return fallback;
    if (v->kind == Value::Kind::Float)
        return v->f;
    if (v->kind == Value::Kind::Int)
        return static_cast<double>(v->i);
    return fallback;
}

}  // namespace

std::string eventToJson(const TrainEvent& event)
{
    return eventJson(event).dump();
}

void freezeStages(FecModelImpl& model, const std::vector<int>& stages)
{
    for (int s : stages) {
        if (s < 0 || s > 3)
            throw std::invalid_argument("--freeze-stages: stage " + std::to_string(s) + " does not exist (0-3)");
        std::vector<std::string> prefixes{"network." + std::to_string(2 * s) + "."};
        if (s == 0)
            prefixes.push_back("patch_embed.");
        else
            prefixes.push_back("network." + std::to_string(2 * s - 1) + ".");
        for (auto& p : model.named_parameters())
            for (const auto& prefix : prefixes)
                if (p.key().rfind(prefix, 0) == 0)
                    p.value().set_requires_grad(false);
    }
}

std::vector<std::string> loadMatchingWeights(FecModelImpl& model, const StateDict& weights)
{
    std::map<std::string, at::Tensor> byKey(weights.begin(), weights.end());
    std::vector<std::string> kept;
    at::NoGradGuard noGrad;
    for (auto& p : model.named_parameters()) {
        auto it = byKey.find(p.key());
        if (it == byKey.end() || it->second.sizes() != p.value().sizes() ||
            !at::isFloatingType(it->second.scalar_type())) {
            kept.push_back(p.key());
            continue;
        }
        p.value().copy_(it->second);
    }
    return kept;
}

EvalResult evaluate(FecModelImpl& model, const Dataset& data, const EvalOptions& o, DistContext* dist,
                    const std::atomic<bool>* cancel)
{
    const int rank = dist ? dist->rank() : 0, world = dist ? dist->worldSize() : 1;
    const auto classes = static_cast<int64_t>(data.classNames().size());
    const auto device = model.parameters().front().device();
    const bool wasTraining = model.is_training();
    model.eval();
    at::NoGradGuard noGrad;

    // The loader needs shared ownership; the caller keeps `data` alive for the whole call.
    DatasetPtr shared(&data, [](const Dataset*) {});
    const auto resize = o.resize;
    const int size = o.size;
    Loader loader(
        shared, evalBatches(data.size(), o.batch, rank, world),
        [resize, size](const Sample& s, uint64_t) { return evalTransform(s.image, size, resize); }, 0, o.workers);
    double lossSum = 0, correct1 = 0, correct5 = 0, count = 0;
    at::Tensor confusion = at::zeros({classes, classes}, at::kLong);
    const int64_t k = std::min<int64_t>(5, classes);
    bool cancelled = false;
    while (auto batch = loader.next()) {
        if (cancel && cancel->load()) {
            cancelled = true;
            break;
        }
        auto logits = model.forward(batch->images.to(device)).to(at::kCPU).to(at::kFloat);
        const auto& labels = batch->labels;
        lossSum += at::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum).item<double>();
        auto top = std::get<1>(logits.topk(k, 1));
        correct1 += top.select(1, 0).eq(labels).sum().item<double>();
        correct5 += top.eq(labels.unsqueeze(1)).any(1).sum().item<double>();
        count += static_cast<double>(labels.size(0));
        if (o.confusion)
            confusion.index_put_({labels, top.select(1, 0)}, at::ones({labels.size(0)}, at::kLong),
                                 /*accumulate=*/true);
    }
    if (dist) {
        auto sums = dist->allReduceSum({lossSum, correct1, correct5, count, cancelled ? 1.0 : 0.0});
        lossSum = sums[0];
        correct1 = sums[1];
        correct5 = sums[2];
        count = sums[3];
        cancelled = sums[4] > 0;
        if (o.confusion) {
            auto flat = confusion.to(at::kDouble).reshape({-1});
            std::vector<double> values(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
            auto summed = dist->allReduceSum(values);
            confusion = at::tensor(summed, at::kDouble).view({classes, classes}).to(at::kLong);
        }
    }
    if (wasTraining)
        model.train();
    EvalResult r;
    r.complete = !cancelled;
    r.count = static_cast<int64_t>(count);
    if (count > 0) {
        r.loss = lossSum / count;
        r.top1 = 100.0 * correct1 / count;
        r.top5 = 100.0 * correct5 / count;
    }
    if (o.confusion)
        r.confusion = confusion;
    return r;
}

struct Trainer::State {
    // First member, so released last: after the logs and checkpoints are closed.
    std::unique_ptr<RunLock> runLock;
    TrainOptions o;
    DatasetPtr train, val;
    DistContext* dist = nullptr;
    std::function<void(const std::string&)> log;
    int rank = 0, world = 1;
    c10::Device device{c10::kCPU};

    FecModel model{nullptr};
    std::vector<at::Tensor> trainable;
    std::unique_ptr<AdamW> optimizer;
    std::unique_ptr<ModelEma> ema;
    CosineSchedule schedule;
    std::vector<std::string> classNames;
    int64_t classes = 0;
    EvalResize evalResize = EvalResize::Crop;

    int64_t stepsPerEpoch = 0, totalSteps = 0;
    int totalEpochs = 0;

    // Progress (what checkpoints record).
    int epoch = 0;
    int64_t stepInEpoch = 0, globalStep = 0;
    double bestTop1 = -1;
    int bestEpoch = -1;
    int pendingValidation = -1;  ///< epoch whose validation a stop interrupted (done first on resume)
    bool resumed = false;

    std::unique_ptr<EventWriter> events;
    std::ofstream metrics;
    std::chrono::steady_clock::time_point started;
    json runRecord;  ///< run.json as written at the start (the final record is added to it)

    bool isWriter() const { return rank == 0; }
    void message(const std::string& text) const
    {
        if (log && rank == 0)
            log(text);
    }

    std::string lastPath() const { return (fs::path(o.outDir) / "last.pth.tar").string(); }
    std::string bestPath() const { return (fs::path(o.outDir) / "best.pth.tar").string(); }

    void setup();
    /// Takes the run folder (rank 0) before anything in it is read or written.
    void lockRunFolder();
    void restore(const std::string& path);
    void openLogs();
    TrainResult loop(const std::atomic<bool>* cancel, const TrainCallback& callback);
    /// Adds the "final" object to run.json (rank 0; never throws: it may run while unwinding).
    void writeFinal(const std::string& status, const std::string& reason) noexcept;
    void emit(const TrainEvent& event, const TrainCallback& callback);
    void save(bool best);
    EvalResult validate(FecModelImpl& m, const std::atomic<bool>* cancel);
    /// Validation after epoch `epochIndex` (or at the last step): emits the val event, updates
    /// the best metric. Returns false when a stop interrupted it (nothing emitted).
    bool validateEpoch(int epochIndex, const std::atomic<bool>* cancel, const TrainCallback& callback, bool* best);
};

void Trainer::State::setup()
{
    auto& c = o;
    if (c.outDir.empty())
        throw std::invalid_argument("an output folder is required");
    if (!train || train->size() == 0)
        throw std::invalid_argument("the training set is empty");
    if (c.batch < 1 || c.accum < 1 || c.epochs < 1 || c.workers < 0 || c.maxSteps < 0 || c.logEvery < 1)
        throw std::invalid_argument(
            "batch, accum, epochs and log interval must be positive, workers and max steps >= 0");
    if (!(c.lr > 0) || c.weightDecay < 0 || c.warmupEpochs < 0 || c.clipGrad < 0 || c.emaDecay < 0 || c.emaDecay >= 1)
        throw std::invalid_argument("invalid learning rate, weight decay, warm-up, clipping or EMA decay");
    if (c.dropPath < 0 || c.dropPath >= 1)
        throw std::invalid_argument("the drop-path rate must be in [0, 1)");
    if (c.mix.smoothing < 0 || c.mix.smoothing >= 1 || c.mix.mixupAlpha < 0 || c.mix.cutmixAlpha < 0)
        throw std::invalid_argument("invalid smoothing, mixup or cutmix value");
    if (c.augment.scaleMin <= 0 || c.augment.scaleMin > c.augment.scaleMax || c.augment.scaleMax > 1 ||
        c.augment.hflip < 0 || c.augment.hflip > 1 || c.augment.eraseProb < 0 || c.augment.eraseProb > 1)
        throw std::invalid_argument("invalid crop scale, flip or erasing probability");

    classNames = train->classNames();
    classes = static_cast<int64_t>(classNames.size());
    if (classes < 2)
        throw std::invalid_argument("training needs at least two classes (found " + std::to_string(classes) + ")");
    if (val && val->classNames() != classNames)
        throw std::invalid_argument("the validation set's classes differ from the training set's");
    evalResize = parseEvalResize(c.evalResize.empty() ? train->preprocess() : c.evalResize);
    c.evalResize = resizeName(evalResize);
    c.augment.size = c.size;

    rank = dist ? dist->rank() : 0;
    world = dist ? dist->worldSize() : 1;
    device = selectDevice(c.device);
    if (device.is_cuda() && dist)
        device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(dist->options().localRank));
    lockRunFolder();

    const auto last = lastPath();
    std::error_code ec;
    if (c.resume && !fs::exists(last, ec))
        throw std::invalid_argument("--resume: " + last + " does not exist");

    // The model: resumed, fine-tuned from a checkpoint, or new.
    at::manual_seed(mixSeed(c.seed, kInitStream));
    if (c.resume) {
        CheckpointInfo info;
        LoadOptions load;
        load.weights = WeightsChoice::StateDict;
        auto weights = readStateDict(last, load, &info);
        if (!info.configStored)
            throw CheckpointError(last +
                                  ": cannot resume: the checkpoint does not record its architecture (fec_config)");
        c.config = info.inferred.config;
        model = FecModel(c.config);
        try {
            loadWeights(*model, weights);
        } catch (const std::invalid_argument& e) {
            throw CheckpointError(last + ": " + e.what());
        }
        if (info.classNames != classNames)
            throw std::invalid_argument("--resume: the checkpoint's classes differ from the data's");
    } else if (!c.checkpoint.empty()) {
        LoadOptions load;
        load.weights = c.weights;
        auto loaded = loadCheckpoint(c.checkpoint, load);
        auto cfg = loaded.info.inferred.config;
        if (cfg.forkFeat || cfg.numClasses != classes) {
            const int previous = cfg.numClasses;
            cfg.forkFeat = false;
            cfg.numClasses = static_cast<int>(classes);
            cfg.validate();
            model = FecModel(cfg);
            auto kept = loadMatchingWeights(*model, stateDictOf(*loaded.model));
            std::string keys;
            for (size_t i = 0; i < kept.size(); ++i)
                keys += (i ? ", " : "") + kept[i];
            message("new classifier for " + std::to_string(classes) + " classes (the checkpoint had " +
                    std::to_string(previous) + "); freshly initialised: " + keys);
        } else {
            model = loaded.model;
        }
        c.config = model->config();
        message("starting from " + c.checkpoint + " (" + weightsDescription(loaded.info) + ")");
    } else {
        c.config.numClasses = static_cast<int>(classes);
        c.config.forkFeat = false;
        model = FecModel(c.config);
    }
    c.config.checkInputSize(c.size, c.size);
    freezeStages(*model, c.freezeStages);
    model->setDropPath(c.dropPath);
    model->to(device);
    model->train();

    std::vector<std::pair<std::string, at::Tensor>> params;
    for (auto& p : model->named_parameters())
        if (p.value().requires_grad()) {
            params.emplace_back(p.key(), p.value());
            trainable.push_back(p.value());
        }
    if (params.empty())
        throw std::invalid_argument("every parameter is frozen: nothing to train");
    AdamWOptions adam;
    adam.beta1 = c.beta1;
    adam.beta2 = c.beta2;
    adam.eps = c.eps;
    adam.weightDecay = c.weightDecay;
    optimizer = std::make_unique<AdamW>(std::move(params), adam);
    if (c.emaDecay > 0)
        ema = std::make_unique<ModelEma>(*model, c.emaDecay);

    const int64_t microBatches = train->size() / (static_cast<int64_t>(world) * c.batch);
    stepsPerEpoch = microBatches / c.accum;
    if (stepsPerEpoch < 1)
        throw std::invalid_argument("the training set (" + std::to_string(train->size()) +
                                    " images) is smaller than one optimizer step (" + std::to_string(world) + " x " +
                                    std::to_string(c.batch) + " x " + std::to_string(c.accum) + " images)");
    totalSteps = static_cast<int64_t>(c.epochs) * stepsPerEpoch;
    if (c.maxSteps > 0)
        totalSteps = std::min(totalSteps, c.maxSteps);
    totalEpochs = static_cast<int>((totalSteps + stepsPerEpoch - 1) / stepsPerEpoch);
    schedule.baseLr = c.lr;
    schedule.minLr = c.minLr;
    schedule.warmupLr = c.warmupLr;
    schedule.warmupSteps =
        std::min<int64_t>(static_cast<int64_t>(std::llround(c.warmupEpochs * stepsPerEpoch)), totalSteps);
    schedule.totalSteps = totalSteps;

    if (c.resume)
        restore(last);

    if (dist) {
        // Every rank starts from rank 0's weights, averages and optimizer state.
        std::vector<at::Tensor> state;
        for (auto& p : model->parameters())
            state.push_back(p);
        if (ema)
            for (auto& p : ema->model()->parameters())
                state.push_back(p);
        auto opt = optimizer->stateTensors();
        state.insert(state.end(), opt.begin(), opt.end());
        dist->broadcast(state);
        optimizer->setSteps(opt.back());
    }
}

void Trainer::State::lockRunFolder()
{
    if (!isWriter())
        return;
    // Under the `--nproc-per-node` launcher, the launcher (this process's parent) owns the folder.
    if (const char* owner = std::getenv(kRunLockOwnerEnv)) {
        const long launcher = std::strtol(owner, nullptr, 10);
        if (launcher > 0 && launcher == static_cast<long>(::getppid()) && runFolderOwner(o.outDir) == launcher)
            return;
    }
    runLock = std::make_unique<RunLock>(o.outDir);
}

void Trainer::State::restore(const std::string& path)
{
    pickle::Archive archive;
    try {
        archive = pickle::readTorchFile(path);
    } catch (const std::exception& e) {
        throw CheckpointError(path + ": " + e.what());
    }
    const auto& root = archive.root;
    auto tensorOf = [&](const ValuePtr& v, const std::string& what) {
        if (!v || v->kind != Value::Kind::Tensor)
            throw CheckpointError(path + ": cannot resume: " + what + " is not a tensor");
        auto it = archive.storages.find(v->tensor.storageKey);
        if (it == archive.storages.end())
            throw CheckpointError(path + ": cannot resume: " + what + " refers to a missing storage");
        return toTensor(v->tensor, it->second);
    };
    auto state = root->get("train_state");
    epoch = static_cast<int>(intEntry(state, "epoch", path));
    stepInEpoch = intEntry(state, "step_in_epoch", path);
    globalStep = intEntry(state, "global_step", path);
    bestTop1 = realEntry(state, "best_top1", -1);
    bestEpoch = static_cast<int>(realEntry(state, "best_epoch", -1));
    pendingValidation = static_cast<int>(realEntry(state, "pending_validation", -1));
    const auto savedSteps = intEntry(state, "steps_per_epoch", path);
    if (savedSteps != stepsPerEpoch)
        message("warning: the run had " + std::to_string(savedSteps) + " steps per epoch, now " +
                std::to_string(stepsPerEpoch) +
                " (different data, batch, accumulation or process count): "
                "the data order will not continue exactly");
    if (stepInEpoch > stepsPerEpoch) {
        stepInEpoch = 0;
        ++epoch;
    }

    auto optimizerState = root->get("optimizer");
    auto perParam = optimizerState ? optimizerState->get("state") : nullptr;
    at::NoGradGuard noGrad;
    for (auto& slot : optimizer->slots()) {
        auto entry = perParam ? perParam->get(slot.name) : nullptr;
        if (!entry)
            continue;  // never updated (e.g. no gradient yet)
        auto step = entry->get("step");
        if (step && step->kind == Value::Kind::Tensor)
            slot.step = static_cast<int64_t>(tensorOf(step, slot.name + " step").item<double>());
        else
            slot.step = intEntry(entry, "step", path);
        auto m = tensorOf(entry->get("exp_avg"), slot.name + " exp_avg");
        auto v = tensorOf(entry->get("exp_avg_sq"), slot.name + " exp_avg_sq");
        if (m.sizes() != slot.expAvg.sizes() || v.sizes() != slot.expAvgSq.sizes())
            throw CheckpointError(path + ": cannot resume: optimizer state of " + slot.name + " has the wrong shape");
        slot.expAvg.copy_(m);
        slot.expAvgSq.copy_(v);
    }
    if (ema) {
        auto emaDict = root->get("state_dict_ema");
        if (!emaDict)
            throw CheckpointError(path + ": cannot resume with EMA: the checkpoint has no state_dict_ema");
        StateDict weights;
        for (const auto& [k, v] : emaDict->dict)
            if (k->kind == Value::Kind::String)
                weights.emplace_back(k->s, tensorOf(v, "state_dict_ema." + k->s));
        loadWeights(*ema->model(), weights);
    }
    resumed = true;
    message("resuming from " + path + " at step " + std::to_string(globalStep) + " (epoch " + std::to_string(epoch) +
            ", step " + std::to_string(stepInEpoch) + " of " + std::to_string(stepsPerEpoch) + ")");
}

void Trainer::State::openLogs()
{
    if (!isWriter())
        return;
    std::error_code ec;
    fs::create_directories(o.outDir, ec);
    if (ec)
        throw std::runtime_error("cannot create the run folder " + o.outDir + ": " + ec.message());

    json run;
    run["format"] = "fec-train-run/1";
    run["options"] = json::parse(optionsToJson(o));
    run["train_data"] = train->description();
    run["val_data"] = val ? val->description() : "";
    run["train_size"] = train->size();
    run["val_size"] = val ? val->size() : 0;
    run["class_names"] = classNames;
    run["architecture"] = json::parse(model->config().toJson());
    run["parameters"] = model->parameterCount();
    run["trainable_parameters"] = [&] {
        int64_t n = 0;
        for (auto& t : trainable)
            n += t.numel();
        return n;
    }();
    run["world_size"] = world;
    run["threads_per_process"] = at::get_num_threads();
    run["device"] = device.str();
    run["steps_per_epoch"] = stepsPerEpoch;
    run["total_steps"] = totalSteps;
    run["epochs"] = totalEpochs;
    run["warmup_steps"] = schedule.warmupSteps;
    run["global_batch"] = static_cast<int64_t>(world) * o.batch * o.accum;
    run["resumed_at_step"] = resumed ? json(globalStep) : json(nullptr);
    run["started"] = unixNow();
    if (!o.argsJson.empty())
        run["command"] = json::parse(o.argsJson, nullptr, false);
    writeFileAtomic((fs::path(o.outDir) / "run.json").string(), run.dump(2) + "\n");
    runRecord = std::move(run);

    const auto metricsPath = (fs::path(o.outDir) / "metrics.jsonl").string();
    if (resumed) {
        // Drop what an interrupted run logged after its last checkpoint: it is redone.
        std::ifstream in(metricsPath);
        std::string kept, line;
        while (std::getline(in, line)) {
            auto j = json::parse(line, nullptr, false);
            if (!j.is_discarded() && j.is_object() && j.value("step", int64_t(0)) <= globalStep)
                kept += line + "\n";
        }
        writeFileAtomic(metricsPath, kept);
        metrics.open(metricsPath, std::ios::app);
    } else {
        metrics.open(metricsPath, std::ios::trunc);
    }
    if (!metrics)
        throw std::runtime_error("cannot write " + metricsPath);
    if (o.tensorboard)
        events = std::make_unique<EventWriter>(o.outDir);
}

void Trainer::State::emit(const TrainEvent& e, const TrainCallback& callback)
{
    if (!isWriter())
        return;
    metrics << eventToJson(e) << "\n";
    metrics.flush();
    if (events) {
        std::vector<std::pair<std::string, float>> scalars;
        const std::string p = e.phase + "/";
        scalars.emplace_back(p + "loss", static_cast<float>(e.loss));
        if (e.phase == "train") {
            scalars.emplace_back("train/lr", static_cast<float>(e.lr));
            scalars.emplace_back("train/images_per_s", static_cast<float>(e.imagesPerSecond));
        }
        if (e.top1)
            scalars.emplace_back(p + "top1", static_cast<float>(*e.top1));
        if (e.top5)
            scalars.emplace_back(p + "top5", static_cast<float>(*e.top5));
        if (e.emaLoss)
            scalars.emplace_back(p + "ema_loss", static_cast<float>(*e.emaLoss));
        if (e.emaTop1)
            scalars.emplace_back(p + "ema_top1", static_cast<float>(*e.emaTop1));
        if (e.emaTop5)
            scalars.emplace_back(p + "ema_top5", static_cast<float>(*e.emaTop5));
        events->write(e.step, scalars, e.time);
        events->flush();
    }
    if (callback)
        callback(e);
}

void Trainer::State::save(bool best)
{
    if (!isWriter())
        return;
    std::map<std::string, pickle::Storage> storages;
    auto root = Value::dictionary();

    auto optimizerValue = Value::dictionary();
    auto perParam = Value::dictionary();
    auto decayNames = Value::list(), plainNames = Value::list();
    for (const auto& slot : optimizer->slots()) {
        (slot.decay ? decayNames : plainNames)->items.push_back(Value::string(slot.name));
        if (slot.step == 0)
            continue;
        auto entry = Value::dictionary();
        entry->set("step", tensorValue(at::scalar_tensor(static_cast<double>(slot.step), at::kFloat), storages));
        entry->set("exp_avg", tensorValue(slot.expAvg, storages));
        entry->set("exp_avg_sq", tensorValue(slot.expAvgSq, storages));
        perParam->set(slot.name, entry);
    }
    optimizerValue->set("state", perParam);
    auto groups = Value::list();
    const double lr = schedule.lrAt(globalStep);
    for (int g = 0; g < 2; ++g) {
        auto group = Value::dictionary();
        group->set("lr", Value::real(lr));
        group->set("betas", Value::tuple({Value::real(o.beta1), Value::real(o.beta2)}));
        group->set("eps", Value::real(o.eps));
        group->set("weight_decay", Value::real(g == 0 ? o.weightDecay : 0.0));
        group->set("amsgrad", Value::boolean(false));
        group->set("params", g == 0 ? decayNames : plainNames);
        groups->items.push_back(group);
    }
    optimizerValue->set("param_groups", groups);

    auto scheduler = Value::dictionary();
    scheduler->set("name", Value::string("cosine"));
    scheduler->set("base_lr", Value::real(schedule.baseLr));
    scheduler->set("min_lr", Value::real(schedule.minLr));
    scheduler->set("warmup_lr", Value::real(schedule.warmupLr));
    scheduler->set("warmup_steps", Value::integer(schedule.warmupSteps));
    scheduler->set("total_steps", Value::integer(schedule.totalSteps));
    scheduler->set("last_step", Value::integer(globalStep));
    scheduler->set("last_lr", Value::real(lr));

    auto state = Value::dictionary();
    state->set("epoch", Value::integer(epoch));
    state->set("step_in_epoch", Value::integer(stepInEpoch));
    state->set("global_step", Value::integer(globalStep));
    state->set("steps_per_epoch", Value::integer(stepsPerEpoch));
    state->set("total_steps", Value::integer(totalSteps));
    state->set("world_size", Value::integer(world));
    state->set("batch", Value::integer(o.batch));
    state->set("accum", Value::integer(o.accum));
    state->set("best_top1", Value::real(bestTop1));
    state->set("best_epoch", Value::integer(bestEpoch));
    state->set("pending_validation", Value::integer(pendingValidation));

    // All randomness is counter-based (random.h), so this is the whole generator state.
    auto rng = Value::dictionary();
    rng->set("scheme", Value::string("counter-based: sample (seed, epoch, index); drop-path and mixing (seed, step, "
                                     "micro-batch, rank); epoch order (seed, epoch)"));
    rng->set("seed", Value::integer(static_cast<int64_t>(o.seed)));
    rng->set("epoch", Value::integer(epoch));
    rng->set("step_in_epoch", Value::integer(stepInEpoch));
    rng->set("global_step", Value::integer(globalStep));

    // timm's `args` (a Namespace there; a plain dict here) for `fec inspect`.
    auto args = Value::dictionary();
    args->set("model", Value::string(model->config().variant));
    args->set("epochs", Value::integer(totalEpochs));
    args->set("batch_size", Value::integer(o.batch));
    args->set("lr", Value::real(o.lr));
    args->set("weight_decay", Value::real(o.weightDecay));
    args->set("img_size", Value::integer(o.size));
    args->set("drop_path", Value::real(o.dropPath));
    args->set("smoothing", Value::real(o.mix.smoothing));
    args->set("mixup", Value::real(o.mix.mixupAlpha));
    args->set("cutmix", Value::real(o.mix.cutmixAlpha));
    args->set("reprob", Value::real(o.augment.eraseProb));
    args->set("model_ema_decay", Value::real(o.emaDecay));
    args->set("seed", Value::integer(static_cast<int64_t>(o.seed)));
    args->set("freeze_stages", intList(o.freezeStages));

    SaveOptions save;
    save.epoch = epoch;
    save.classNames = classNames;
    save.inputSize = o.size;
    save.preprocess = resizeName(evalResize);
    StateDict emaWeights;
    if (ema) {
        emaWeights = stateDictOf(*ema->model());
        save.ema = &emaWeights;
    }
    save.extra.emplace_back("optimizer", optimizerValue);
    save.extra.emplace_back("scheduler", scheduler);
    save.extra.emplace_back("train_state", state);
    save.extra.emplace_back("rng", rng);
    save.extra.emplace_back("metric", Value::real(bestTop1));
    save.extra.emplace_back("args", args);
    save.extra.emplace_back("fec_train_options", Value::string(optionsToJson(o)));
    save.extraStorages = &storages;
    if (best)
        saveCheckpoint(bestPath(), *model, save);
    saveCheckpoint(lastPath(), *model, save);
}

EvalResult Trainer::State::validate(FecModelImpl& m, const std::atomic<bool>* cancel)
{
    EvalOptions e;
    e.size = o.size;
    e.batch = o.batch;
    e.workers = o.workers;
    e.resize = evalResize;
    return evaluate(m, *val, e, dist, cancel);
}

bool Trainer::State::validateEpoch(int epochIndex, const std::atomic<bool>* cancel, const TrainCallback& callback,
                                   bool* best)
{
    *best = false;
    if (!val || val->size() == 0)
        return true;
    auto r = validate(*model, cancel);
    if (!r.complete)
        return false;
    TrainEvent e;
    e.phase = "val";
    e.epoch = epochIndex;
    e.step = globalStep;
    e.totalSteps = totalSteps;
    e.loss = r.loss;
    e.lr = schedule.lrAt(globalStep);
    e.top1 = r.top1;
    e.top5 = r.top5;
    double metric = r.top1;
    if (ema) {
        auto er = validate(*ema->model(), cancel);
        if (!er.complete)
            return false;
        e.emaLoss = er.loss;
        e.emaTop1 = er.top1;
        e.emaTop5 = er.top5;
        metric = er.top1;
    }
    e.time = unixNow();
    e.elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    emit(e, callback);
    if (metric > bestTop1) {
        bestTop1 = metric;
        bestEpoch = epochIndex;
        *best = true;
    }
    return true;
}

Trainer::Trainer(TrainOptions options, DatasetPtr train, DatasetPtr val, DistContext* dist,
                 std::function<void(const std::string&)> log)
    : m_state(std::make_unique<State>())
{
    m_state->o = std::move(options);
    m_state->train = std::move(train);
    m_state->val = std::move(val);
    m_state->dist = dist;
    m_state->log = std::move(log);
    m_state->setup();
}

Trainer::~Trainer() = default;

const TrainOptions& Trainer::options() const
{
    return m_state->o;
}

int64_t Trainer::stepsPerEpoch() const
{
    return m_state->stepsPerEpoch;
}

int64_t Trainer::totalSteps() const
{
    return m_state->totalSteps;
}

FecModel Trainer::model() const
{
    return m_state->model;
}

void Trainer::State::writeFinal(const std::string& status, const std::string& reason) noexcept
{
    if (!isWriter() || runRecord.is_null())
        return;
    try {
        json f;
        f["status"] = status;
        f["steps"] = globalStep;
        f["total_steps"] = totalSteps;
        f["epochs"] = epoch;
        if (bestEpoch >= 0)
            f["best_metric"] = {{"name", ema ? "ema_top1" : "top1"}, {"value", bestTop1}, {"epoch", bestEpoch}};
        else
            f["best_metric"] = nullptr;
        f["exit_reason"] = reason;
        f["finished_at"] = unixNow();
        std::error_code ec;
        f["last_checkpoint"] = fs::exists(lastPath(), ec) ? json(lastPath()) : json(nullptr);
        f["best_checkpoint"] = bestEpoch >= 0 && fs::exists(bestPath(), ec) ? json(bestPath()) : json(nullptr);
        auto run = runRecord;
        run["final"] = std::move(f);
        writeFileAtomic((fs::path(o.outDir) / "run.json").string(), run.dump(2) + "\n");
    } catch (const std::exception& e) {
        try {
            message(std::string("warning: cannot write the final record to run.json: ") + e.what());
        } catch (...) {
        }
    }
}

TrainResult Trainer::run(const std::atomic<bool>* cancel, const TrainCallback& callback)
{
    auto& s = *m_state;
    try {
        auto result = s.loop(cancel, callback);
        std::string reason;
        if (result.completed) {
            reason =
                "reached the last step (" + std::to_string(result.steps) + " of " + std::to_string(s.totalSteps) + ")";
        } else {
            reason = "stop requested at step " + std::to_string(result.steps) + " of " + std::to_string(s.totalSteps);
            reason += s.pendingValidation >= 0 ? " (during the validation of epoch " +
                                                     std::to_string(s.pendingValidation + 1) + ", redone on resume)"
                                               : "";
            reason += "; resume continues from last.pth.tar";
        }
        s.writeFinal(result.completed ? "done" : "stopped", reason);
        if (s.dist)
            s.dist->barrier();
        return result;
    } catch (const std::exception& e) {
        s.writeFinal("failed", e.what());
        throw;
    }
}

TrainResult Trainer::State::loop(const std::atomic<bool>* cancel, const TrainCallback& callback)
{
    auto& s = *this;
    auto& o = s.o;
    s.openLogs();
    s.started = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - s.started).count(); };

    TrainResult result;
    result.lastCheckpoint = s.lastPath();
    const auto augment = o.augment;
    SampleTransform transform = [augment](const Sample& sample, uint64_t seed) {
        return trainTransform(sample.image, augment, seed);
    };

    double windowLoss = 0, windowCorrect = 0, windowCount = 0, windowImages = 0;
    bool windowMeasured = true;
    auto windowStart = std::chrono::steady_clock::now();
    bool stop = false;

    // A stop during the last validation: do it now, before training goes on.
    if (s.pendingValidation >= 0) {
        bool best = false;
        if (s.validateEpoch(s.pendingValidation, cancel, callback, &best)) {
            s.pendingValidation = -1;
            s.save(best);
            if (best)
                result.bestCheckpoint = s.bestPath();
        } else {
            stop = true;
        }
    }

    while (s.globalStep < s.totalSteps && !stop) {
        const auto order = epochOrder(s.train->size(), o.seed, s.epoch);
        auto micro = trainBatches(order, o.batch, s.rank, s.world);
        micro.resize(static_cast<size_t>(s.stepsPerEpoch * o.accum));
        micro.erase(micro.begin(), micro.begin() + s.stepInEpoch * o.accum);
        Loader loader(s.train, std::move(micro), transform,
                      mixSeed(o.seed, kSampleStream, static_cast<uint64_t>(s.epoch)), o.workers);

        while (s.stepInEpoch < s.stepsPerEpoch && s.globalStep < s.totalSteps) {
            const double lr = s.schedule.lrAt(s.globalStep);
            double lossSum = 0, correct = 0, count = 0;
            bool measured = true;
            for (int m = 0; m < o.accum; ++m) {
                auto batch = loader.next();
                TORCH_CHECK(batch, "the loader ran out of batches");
                auto images = batch->images.to(s.device);
                auto labels = batch->labels.to(s.device);
                at::manual_seed(mixSeed(o.seed, kDropPathStream, static_cast<uint64_t>(s.globalStep),
                                        static_cast<uint64_t>(m), static_cast<uint64_t>(s.rank)));
                bool mixed = false;
                auto targets = mixBatch(images, labels, s.classes, o.mix,
                                        mixSeed(o.seed, kMixStream, static_cast<uint64_t>(s.globalStep),
                                                static_cast<uint64_t>(m), static_cast<uint64_t>(s.rank)),
                                        &mixed);
                auto logits = s.model->forward(images);
                auto loss = softCrossEntropy(logits, targets);
                (o.accum > 1 ? loss / o.accum : loss).backward();
                const auto n = static_cast<double>(labels.size(0));
                lossSum += loss.item<double>() * n;
                count += n;
                if (mixed)
                    measured = false;
                else
                    correct += logits.detach().argmax(1).eq(labels).sum().item<double>();
            }
            const bool wantStop = cancel && cancel->load();
            std::vector<double> extras{lossSum, count, correct, wantStop ? 1.0 : 0.0, measured ? 0.0 : 1.0};
            if (s.dist)
                extras = s.dist->allReduceGradients(s.trainable, extras, s.globalStep);
            if (o.clipGrad > 0)
                clipGradNorm(s.trainable, o.clipGrad);
            s.optimizer->step(lr);
            s.optimizer->zeroGrad();
            if (s.ema)
                s.ema->update();
            ++s.globalStep;
            ++s.stepInEpoch;
            stop = extras[3] > 0;

            windowLoss += extras[0];
            windowCount += extras[1];
            windowCorrect += extras[2];
            windowImages += extras[1];
            windowMeasured = windowMeasured && extras[4] == 0;
            const bool lastStep = s.globalStep == s.totalSteps || s.stepInEpoch == s.stepsPerEpoch;
            if (s.globalStep % o.logEvery == 0 || s.globalStep == 1 || lastStep || stop) {
                const double seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - windowStart).count();
                TrainEvent e;
                e.phase = "train";
                e.epoch = s.epoch;
                e.step = s.globalStep;
                e.totalSteps = s.totalSteps;
                e.loss = windowLoss / std::max(windowCount, 1.0);
                e.lr = lr;
                if (windowMeasured)
                    e.top1 = 100.0 * windowCorrect / std::max(windowCount, 1.0);
                e.imagesPerSecond = seconds > 0 ? windowImages / seconds : 0;
                e.time = unixNow();
                e.elapsed = elapsed();
                s.emit(e, callback);
                windowLoss = windowCorrect = windowCount = windowImages = 0;
                windowMeasured = true;
                windowStart = std::chrono::steady_clock::now();
            }
            // A stop requested during this step (e.g. by the callback) takes effect now; with
            // several ranks it is voted on in the next step's all-reduce instead.
            if (!s.dist && cancel && cancel->load())
                stop = true;
            if (stop)
                break;
        }

        const bool epochDone = s.stepInEpoch >= s.stepsPerEpoch;
        const bool finished = s.globalStep >= s.totalSteps;
        if (stop && !epochDone && !finished) {
            s.save(false);
            break;
        }
        // End of an epoch (or of the run): validate, then checkpoint.
        bool best = false;
        if (!s.validateEpoch(s.epoch, cancel, callback, &best)) {
            s.pendingValidation = s.epoch;
            stop = true;
        }
        if (epochDone) {
            ++s.epoch;
            s.stepInEpoch = 0;
        }
        s.save(best);
        if (best)
            result.bestCheckpoint = s.bestPath();
        windowStart = std::chrono::steady_clock::now();
        if (s.dist && !stop && cancel) {
            // A stop requested during validation is agreed on by all ranks before going on.
            stop = s.dist->allReduceSum({cancel->load() ? 1.0 : 0.0})[0] > 0;
        } else if (!s.dist && cancel && cancel->load()) {
            stop = true;
        }
    }
    result.completed = s.globalStep >= s.totalSteps;
    result.steps = s.globalStep;
    result.epochs = s.epoch;
    result.bestTop1 = s.bestTop1;
    if (result.bestCheckpoint.empty() && s.bestEpoch >= 0)
        result.bestCheckpoint = s.bestPath();
    return result;
}

TrainBenchResult benchmarkTraining(const FecConfig& config, int size, int batch, int steps, int warmup, double emaDecay,
                                   double dropPath, const c10::Device& device)
{
    config.checkInputSize(size, size);
    at::manual_seed(0);
    FecModel model(config);
    model->setDropPath(dropPath);
    model->to(device);
    model->train();
    std::vector<std::pair<std::string, at::Tensor>> params;
    for (auto& p : model->named_parameters())
        params.emplace_back(p.key(), p.value());
    AdamW optimizer(params, {});
    std::unique_ptr<ModelEma> ema;
    if (emaDecay > 0)
        ema = std::make_unique<ModelEma>(*model, emaDecay);
    const auto classes = std::max(config.numClasses, 2);
    auto images = at::randn({batch, 3, size, size}).to(device);
    auto labels = at::randint(0, classes, {batch}, at::kLong).to(device);
    auto targets = smoothOneHot(labels, classes, 0.1);
    std::vector<double> times;
    for (int i = 0; i < warmup + steps; ++i) {
        const auto start = std::chrono::steady_clock::now();
        auto loss = softCrossEntropy(model->forward(images), targets);
        loss.backward();
        optimizer.step(1e-4);
        optimizer.zeroGrad();
        if (ema)
            ema->update();
        (void)loss.item<double>();
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (i >= warmup)
            times.push_back(t);
    }
    std::sort(times.begin(), times.end());
    TrainBenchResult r;
    r.medianSeconds =
        times.size() % 2 ? times[times.size() / 2] : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    r.minSeconds = times.front();
    r.maxSeconds = times.back();
    r.imagesPerSecond = batch / r.medianSeconds;
    r.threads = at::get_num_threads();
    return r;
}

}  // namespace fec::train
