#pragma once

// The options of a training run and the one list of them: each option's `fec train` flag, its
// place in run.json's "options", its type, default (TrainOptions{}'s), help and range. The CLI
// registers its flags from this table, run.json is written and read through it, and the
// explorer's Training dock builds its command lines with it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fec/checkpoint.h"
#include "fec/config.h"
#include "fec/train/augment.h"

namespace fec::train {

/// Everything a run is made of. Defaults follow the authors' recipe where it fits small runs.
struct TrainOptions {
    // Model
    FecConfig config = FecConfig::small();        ///< architecture of a new model (numClasses is set from the data)
    std::string checkpoint;                       ///< start from these weights (fine-tuning); empty: random init
    WeightsChoice weights = WeightsChoice::Auto;  ///< which weights of `checkpoint`
    std::vector<int> freezeStages;  ///< stages whose parameters are not trained (0 also freezes patch_embed)
    double dropPath = 0.1;          ///< stochastic depth rate of the last block

    // Data
    int size = 224;          ///< input side (multiple of the model's sizeMultiple())
    int batch = 64;          ///< images per process and micro-batch
    int accum = 1;           ///< micro-batches per optimizer step
    int workers = 2;         ///< loader threads (0: load in the training thread)
    AugmentOptions augment;  ///< size is overwritten with `size`
    MixOptions mix;          ///< MixUp / CutMix / label smoothing
    std::string evalResize;  ///< "squash" or "crop"; empty: the dataset's preference

    // Recipe
    int epochs = 10;
    int64_t maxSteps = 0;  ///< > 0: stop after this many optimizer steps (the schedule ends there)
    double lr = 1e-3, minLr = 1e-5, warmupLr = 1e-6;
    double warmupEpochs = 1.0;
    double weightDecay = 0.05;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double clipGrad = 0.0;  ///< > 0: clip the global gradient norm
    double emaDecay = 0.0;  ///< > 0: keep an EMA of the weights (e.g. 0.9998)
    uint64_t seed = 0;

    // Run
    std::string outDir;          ///< run folder (created)
    bool resume = false;         ///< continue from outDir/last.pth.tar
    int logEvery = 10;           ///< optimizer steps between train metric lines (1 = every step)
    bool tensorboard = true;     ///< also write events.out.tfevents.*
    std::string device = "cpu";  ///< "cpu", "cuda", "cuda:N" (per-rank: cuda:LOCAL_RANK)
    std::string argsJson;        ///< free-form record of how the run was started (stored in run.json)
};

/// Serialises the hyper-parameters (not the datasets) as JSON, and back: `config` (FecConfig
/// JSON) and every table row that has a run.json key.
std::string optionsToJson(const TrainOptions& options);
/// Overwrites the fields present in `json`; throws std::invalid_argument on a malformed value.
void optionsFromJson(const std::string& json, TrainOptions& options);

/// The type of an option's value (how run.json stores it).
enum class OptionType {
    Int,      ///< JSON integer (int)
    Int64,    ///< JSON integer (int64_t)
    UInt64,   ///< JSON unsigned integer (uint64_t)
    Float,    ///< JSON number (double)
    Bool,     ///< JSON true / false
    Text,     ///< JSON string
    IntList,  ///< JSON array of integers; on the command line "0,1"
};

/// What `fec train --resume` does with the option given again.
enum class OptionRole {
    Recipe,  ///< the run keeps its stored value (a note says the flag is ignored)
    Run,     ///< run length and housekeeping: the value given now wins
};

/// One row of the table. Values travel as text (the command line's spelling); numbers are
/// written in their shortest exact form ("0.001", "1e-05").
struct TrainOption {
    std::string flag;  ///< `fec train` flag ("--lr"); empty: recorded in run.json only
    std::string key;   ///< JSON pointer into run.json's "options" ("/mix/smoothing"); empty: not recorded
    OptionType type = OptionType::Text;
    std::string help;  ///< one line, for `fec train --help` and the dock's tooltips
    OptionRole role = OptionRole::Recipe;
    std::optional<double> min, max;    ///< accepted range of a number (inclusive)
    std::vector<std::string> choices;  ///< accepted values of a Text option (empty: any)
    std::optional<bool> switchValue;   ///< a flag without a value: the Bool it sets ("--no-tensorboard": false)
    std::string (*get)(const TrainOptions&) = nullptr;
    void (*parse)(TrainOptions&, const std::string&) = nullptr;  ///< stores the text (type check only)

    /// The value in `options`, as text.
    std::string value(const TrainOptions& options) const { return get(options); }
    /// TrainOptions{}'s value, as text.
    std::string defaultValue() const;
    /// Checks `text` (type, range, choices) and stores it; throws std::invalid_argument naming
    /// the flag (or the key).
    void set(TrainOptions& options, const std::string& text) const;
    /// "int", "int64", "uint64", "float", "bool", "text" or "int list".
    std::string typeName() const;
    /// The flag, else the key: how messages name the option.
    std::string name() const { return flag.empty() ? key : flag; }
};

/// Every option of TrainOptions that is a value (not the architecture, which `config` records
/// whole, nor the run folder), in run.json order.
const std::vector<TrainOption>& trainOptionTable();
/// The row of a flag ("--lr") or run.json key ("/lr"); nullptr when there is none.
const TrainOption* findTrainOption(std::string_view flagOrKey);

/// `fec train` arguments for the table's flags whose value in `options` differs from the
/// default, plus those named in `always`, in table order ("--lr", "0.002", "--no-tensorboard",
/// ...). Switches are passed when set to their switch value.
std::vector<std::string> optionArguments(const TrainOptions& options, const std::vector<std::string>& always = {});

}  // namespace fec::train
