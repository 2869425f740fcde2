#pragma once

// The training loop: data, recipe, checkpoints (timm layout + everything needed to resume
// exactly), validation, metrics (JSON lines + TensorBoard), cancellation, data parallelism.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/checkpoint.h"
#include "fec/config.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"
#include "fec/train/train_options.h"

namespace fec::train {

class DistContext;

/// One step's or one epoch's measurements, as written to metrics.jsonl.
struct TrainEvent {
    std::string phase;  ///< "train" or "val"
    int epoch = 0;      ///< 0-based epoch the step belongs to
    int64_t step = 0;   ///< optimizer steps completed
    int64_t totalSteps = 0;
    double loss = 0, lr = 0;
    std::optional<double> top1, top5;  ///< percent, where measured
    std::optional<double> emaLoss, emaTop1, emaTop5;
    double imagesPerSecond = 0;
    double time = 0;     ///< seconds since the epoch (Unix time)
    double elapsed = 0;  ///< seconds since this process started training
};

/// The metrics.jsonl line of an event (one JSON object, no newline).
std::string eventToJson(const TrainEvent& event);

using TrainCallback = std::function<void(const TrainEvent&)>;

/// What a run ended with.
struct TrainResult {
    bool completed = false;  ///< reached the last step (false: cancelled)
    int64_t steps = 0;       ///< optimizer steps completed in total
    int epochs = 0;          ///< epochs completed in total
    double bestTop1 = -1;    ///< best validation top-1 (EMA's when enabled); -1 without validation
    std::string lastCheckpoint, bestCheckpoint;
};

/// Evaluation of a model on a dataset.
struct EvalResult {
    double loss = 0, top1 = 0, top5 = 0;  ///< mean cross-entropy; accuracies in percent
    int64_t count = 0;
    bool complete = true;  ///< false when cancelled before the end (partial sums)
    at::Tensor confusion;  ///< [classes, classes] int64, rows true, columns predicted
};

struct EvalOptions {
    int size = 224;
    int batch = 64;
    int workers = 2;
    EvalResize resize = EvalResize::Crop;
    bool confusion = false;
};

/// Top-1 / top-5 / loss of `model` (eval mode, no gradients) over `data`. With `dist`, each rank
/// evaluates its shard and the sums are all-reduced. Stops early when `cancel` becomes true
/// (on any rank): the result then has complete = false.
EvalResult evaluate(FecModelImpl& model, const Dataset& data, const EvalOptions& options, DistContext* dist = nullptr,
                    const std::atomic<bool>* cancel = nullptr);

/// Runs (or resumes) training. `train` and `val` (may be null) must have the same classes.
/// On rank 0 writes RUN_DIR/{run.json, metrics.jsonl, events.out.tfevents.*, last.pth.tar,
/// best.pth.tar}. `cancel` is checked at every step; when it turns true the run stops at that
/// step boundary after writing last.pth.tar (resume continues from there). Rank 0 owns RUN_DIR
/// from construction to destruction (RunLock, run_lock.h; under the `--nproc-per-node` launcher
/// the launcher holds it): a second Trainer or process on the folder gets RunFolderBusy. Throws
/// std::invalid_argument for bad options, CheckpointError, DataError, DistError, RunFolderBusy.
class Trainer {
public:
    /// Builds the model (new, fine-tuned from options.checkpoint, or resumed), the optimizer and
    /// the schedule. `log` receives one-line notes for the user (rank 0 only).
    Trainer(TrainOptions options, DatasetPtr train, DatasetPtr val, DistContext* dist = nullptr,
            std::function<void(const std::string&)> log = {});
    ~Trainer();
    /// Trains to the last step or until `cancel`. Every ending it controls adds a "final" object
    /// to run.json (rank 0): status "done", "stopped" or "failed" (an exception, rethrown), steps,
    /// total_steps, epochs, best_metric ({name, value, epoch} or null), exit_reason, finished_at
    /// (Unix seconds), last_checkpoint and best_checkpoint (paths or null). A run that starts or
    /// resumes rewrites run.json without it.
    TrainResult run(const std::atomic<bool>* cancel = nullptr, const TrainCallback& callback = {});
    /// The options in effect (architecture and evaluation resize resolved).
    const TrainOptions& options() const;
    /// Optimizer steps per epoch and in the whole run.
    int64_t stepsPerEpoch() const;
    int64_t totalSteps() const;
    /// The model being trained.
    FecModel model() const;

private:
    struct State;
    std::unique_ptr<State> m_state;
};

/// `fec train --bench`: median seconds per optimizer step on random data.
struct TrainBenchResult {
    double medianSeconds = 0, minSeconds = 0, maxSeconds = 0;
    double imagesPerSecond = 0;
    int threads = 0;
};
TrainBenchResult benchmarkTraining(const FecConfig& config, int size, int batch, int steps, int warmup,
                                   double emaDecay = 0.0, double dropPath = 0.1,
                                   const c10::Device& device = c10::Device(c10::kCPU));

/// Applies the given frozen stages: requires_grad(false) on network.(2s) and on the pool that
/// leads into it (network.(2s-1)); stage 0 also freezes patch_embed. Throws for stages > 3.
void freezeStages(FecModelImpl& model, const std::vector<int>& stages);

/// Copies into `model` every tensor of `weights` whose key and shape match; returns the keys
/// of `model` that kept their initial values (e.g. a new head).
std::vector<std::string> loadMatchingWeights(FecModelImpl& model, const StateDict& weights);

}  // namespace fec::train
