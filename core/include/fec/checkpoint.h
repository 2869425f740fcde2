#pragma once

// Reading every checkpoint layout users have (timm training checkpoints, bare state_dicts,
// DDP/backbone/model wrappers, legacy files) and writing our own in the timm layout.

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/config.h"
#include "fec/model.h"
#include "fec/pickle.h"

namespace fec {

/// Any problem with a checkpoint file; `what()` starts with the file name.
class CheckpointError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Which weights of a training checkpoint to use.
enum class WeightsChoice { Auto, StateDict, Ema };
/// Parses "auto", "state_dict", "ema"; throws std::invalid_argument otherwise.
WeightsChoice parseWeightsChoice(const std::string& text);

/// A state_dict: tensor by key, in file order.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

struct LoadOptions {
    WeightsChoice weights = WeightsChoice::Auto;  ///< Auto: EMA when present (as the authors' visualisation)
    ConfigHints hints;                            ///< overrides for what shapes cannot tell
};

/// How the weights sit at the top level of a checkpoint file.
enum class CheckpointLayout {
    Unknown,        ///< nothing read yet (a default CheckpointInfo)
    TimmTraining,   ///< {"state_dict", "state_dict_ema", "epoch", ...}, as timm's train.py and our trainer save
    ModelEntry,     ///< a dictionary with the state_dict under "model"
    BareStateDict,  ///< the top level is the state_dict itself
};
/// "timm training checkpoint", "checkpoint with a 'model' entry", "bare state_dict"; "" for Unknown.
std::string toString(CheckpointLayout layout);

/// The entry of a checkpoint file the weights were read from.
enum class WeightsEntry {
    Unknown,       ///< nothing read yet (a default CheckpointInfo)
    StateDictEma,  ///< the EMA weights of a training checkpoint
    StateDict,     ///< the raw weights of a training checkpoint
    Model,         ///< the "model" entry
    TopLevel,      ///< the whole file (a bare state_dict)
};
/// "state_dict_ema", "state_dict", "model", "(top level)"; "" for Unknown.
std::string toString(WeightsEntry entry);

/// What was found in a checkpoint file.
struct CheckpointInfo {
    std::string path;
    std::string container;  ///< "zip" or "legacy"
    CheckpointLayout layout = CheckpointLayout::Unknown;
    WeightsEntry weights = WeightsEntry::Unknown;  ///< entry used
    bool noSeparateStateDict = false;              ///< state_dict was asked for, but the file has no separate one
    bool hasEma = false;
    std::string strippedPrefix;  ///< "module.", "backbone.", ... or empty
    int skippedKeys = 0;         ///< keys outside the FEC backbone (e.g. a segmentation head)
    InferredConfig inferred;     ///< architecture (from our stored config, or inferred from shapes)
    bool configStored = false;   ///< the architecture came from our own "fec_config" entry
    int64_t parameterCount = 0;
    std::vector<std::string> classNames;  ///< stored by our trainer; empty otherwise
    int inputSize = 0;                    ///< stored by our trainer; 0 when unknown
    std::string preprocess;               ///< "squash"/"crop" stored by our trainer; empty otherwise
    std::vector<std::pair<std::string, std::string>> extras;  ///< other top-level entries, described
    std::string argsJson;                                     ///< the argparse Namespace `args` as JSON, or empty
    std::vector<std::string> ignoredGlobals;                  ///< classes in the pickle that were not executed
    /// Weights holding NaN or infinite values: (key without prefix, how many values), in file
    /// order; empty for a healthy file. Such a file still loads, so that it can be inspected, but
    /// whatever it computes is meaningless: `fec inspect` and the window show this list.
    std::vector<std::pair<std::string, int64_t>> nonFiniteTensors;
};

/// The weights entry as messages and JSON show it: toString(info.weights), followed by
/// " (the file has no separate state_dict/state_dict_ema)" when noSeparateStateDict is set.
std::string weightsDescription(const CheckpointInfo& info);

/// Model input side used when neither the user nor the checkpoint names one (the authors' 224).
inline constexpr int kDefaultInputSize = 224;

/// The input side every image command uses: `requested` when > 0, else the side stored in the
/// checkpoint, else kDefaultInputSize.
int inputSizeFor(const CheckpointInfo& info, int requested = 0);

/// The preprocessing an image command uses: `requested` when not empty, else the one stored in
/// the checkpoint, else `fallback` ("squash" for the authors' visualisation, "crop" for their
/// evaluation).
std::string preprocessFor(const CheckpointInfo& info, const std::string& requested = {},
                          const std::string& fallback = "squash");

/// Reads the file and picks the weights (no model built). Throws CheckpointError.
StateDict readStateDict(const std::string& path, const LoadOptions& options, CheckpointInfo* info);

/// A ready model (on the CPU, eval mode) with what was found.
struct LoadedModel {
    FecModel model{nullptr};
    CheckpointInfo info;
};

/// Reads, infers the architecture, builds the model and copies the weights (strict: every key
/// must be present with its shape). Throws CheckpointError naming the file and the problem.
LoadedModel loadCheckpoint(const std::string& path, const LoadOptions& options = {});

/// Copies `weights` into `model` strictly; throws std::invalid_argument on missing or unexpected
/// keys (a few listed) and on shape mismatches (key, expected shape, found shape).
void loadWeights(FecModelImpl& model, const StateDict& weights);

/// The model's parameters as a state_dict (CPU, contiguous, detached), in registration order.
StateDict stateDictOf(FecModelImpl& model);

/// What our checkpoints record besides the weights.
struct SaveOptions {
    int epoch = 0;
    std::vector<std::string> classNames;
    int inputSize = 0;
    std::string preprocess;
    const StateDict* ema = nullptr;  ///< written as state_dict_ema when given
    /// Extra top-level entries (optimizer state, RNG, metrics); must be plain values/tensors.
    std::vector<std::pair<std::string, pickle::ValuePtr>> extra;
    std::map<std::string, pickle::Storage>* extraStorages = nullptr;  ///< storages those reference
};

/// Writes a timm-layout checkpoint ({epoch, arch, state_dict, version, fec_config, ...}) that
/// PyTorch's torch.load + load_state_dict read; atomically. Throws CheckpointError.
void saveCheckpoint(const std::string& path, FecModelImpl& model, const SaveOptions& options = {});

/// Converts a decoded tensor (any float dtype; integer dtypes keep theirs) to an owned at::Tensor.
at::Tensor toTensor(const pickle::TensorRef& ref, const pickle::Storage& storage);
/// Adds `t` as a new storage to `storages` and returns its pickle value.
pickle::ValuePtr tensorValue(const at::Tensor& t, std::map<std::string, pickle::Storage>& storages);

/// Turns a pickled value (None/bool/int/float/str/list/tuple/dict/Namespace) into JSON text.
/// Shared objects are written once (later references as "<shared, shown earlier>"); throws
/// std::length_error when what repeats would add more than 1 MiB of text.
std::string valueToJson(const pickle::Value& value);

}  // namespace fec
