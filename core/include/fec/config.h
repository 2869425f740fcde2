#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fec {

/// Four per-stage integers (stage 0..3).
using StageInts = std::array<int, 4>;

/// Bounds FecConfig::validate() puts on every architecture, whatever its source (a checkpoint's
/// fec_config, shapes read off weights, `fec train` flags, --config or run.json). The published
/// variants stay far inside them (widths <= 512, 12 blocks, 10 proposals, 29.7 M parameters);
/// they keep a hostile or mistyped value from overflowing an int or allocating gigabytes.
inline constexpr int kMaxStageLayers = 64;   ///< blocks per stage
inline constexpr int kMaxWidth = 8192;       ///< stage width, and heads x head_dims per stage
inline constexpr int kMaxMlpHidden = 65536;  ///< MLP hidden width (dims x mlp ratio)
inline constexpr double kMaxMlpRatio = 64.0;
inline constexpr int kMaxProposals = 64;  ///< proposal grid, per side
inline constexpr int kMaxFolds = 16;      ///< region grid, per side
inline constexpr int kMaxClasses = 100000;
inline constexpr int kMaxInChans = 64;                       ///< image channels (two position channels are added)
inline constexpr int64_t kMaxParameters = int64_t(1) << 28;  ///< 1 GiB of float32 weights
/// Largest input side a checkpoint may store as its `input_size` (8192 takes 16 s and 3.8 GB).
inline constexpr int kMaxInputSide = 4096;

/// Architecture of an FEC network (fec-model.md, "Configurations").
struct FecConfig {
    std::string variant = "custom";  ///< "fec_small", "fec_base", "fec_large" or "custom"
    StageInts layers{3, 4, 5, 2};
    StageInts dims{32, 64, 196, 320};
    std::array<double, 4> mlpRatios{8, 8, 4, 4};
    StageInts heads{4, 4, 8, 8};
    StageInts headDims{24, 24, 24, 24};
    StageInts proposalW{4, 4, 2, 2};  ///< proposal grid rows (first spatial axis)
    StageInts proposalH{4, 4, 2, 2};  ///< proposal grid columns (second spatial axis)
    StageInts foldW{1, 1, 1, 1};      ///< region grid along rows
    StageInts foldH{1, 1, 1, 1};      ///< region grid along columns
    int numClasses = 1000;            ///< 0 for a dense-prediction backbone
    bool forkFeat = false;            ///< dense-prediction variant: norm0/2/4/6 instead of norm+head
    int inChans = 3;                  ///< image channels (two position channels are added)

    static FecConfig small();
    static FecConfig base();
    static FecConfig large();
    /// A published variant by name ("fec_small", ...); throws std::invalid_argument otherwise.
    static FecConfig named(const std::string& name);
    /// Names accepted by named().
    static std::vector<std::string> variantNames();

    /// Hidden width of stage s's MLP.
    int mlpHidden(int stage) const;
    /// Checks internal consistency and the bounds above (64-bit arithmetic); throws
    /// std::invalid_argument naming the field, the stage and the value ("heads x head_dims at
    /// stage 0 is 65536 x 65536 = 4294967296, more than 8192"). Every constructor of a model and
    /// every reader of a configuration calls it before anything is allocated.
    void validate() const;
    /// Parameters a model of this architecture has (64-bit; call on a validated config).
    int64_t parameterCount() const;
    /// Smallest side multiple accepted by the network (32 for unfolded models).
    int sizeMultiple() const;
    /// Throws std::invalid_argument when an H x W input cannot run through this network.
    void checkInputSize(int64_t height, int64_t width) const;

    /// Compact JSON (stable key order), stored in our checkpoints as "fec_config".
    std::string toJson() const;
    /// Parses toJson() output; throws std::invalid_argument naming the bad field.
    static FecConfig fromJson(const std::string& json);
    /// "layers 3,4,5,2 dims 32,64,196,320 ..." for messages.
    std::string summary() const;
    bool operator==(const FecConfig& other) const;
};

/// Shape of every tensor of a state_dict, by key.
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

/// The state_dict a model of this architecture has: every parameter's PyTorch key and shape, as
/// FecModel registers them (test_config checks the two agree). Computed without allocating, so
/// that a configuration can be checked against a file's weights before a model is built.
ShapeMap stateDictShapes(const FecConfig& config);

/// What could and could not be read off a state_dict's shapes.
struct InferredConfig {
    FecConfig config;
    bool headsGuessed = false;       ///< heads vs head_dim cannot be told apart from shapes
    bool proposalsDefaulted = true;  ///< proposals and folds are not stored in weights
    std::string notes;               ///< human-readable remarks for `fec inspect`
};

/// Hints that settle what shapes cannot (from the checkpoint's `arch`/args or the user).
struct ConfigHints {
    std::string arch;            ///< e.g. "fec_small" from the checkpoint's `arch` entry
    std::vector<int> heads;      ///< user override, 4 values
    std::vector<int> headDims;   ///< user override, 4 values
    std::vector<int> proposals;  ///< user override, 4 values (pw = ph)
    std::vector<int> folds;      ///< user override, 4 values (fold_w = fold_h)
};

/// Infers the architecture from state_dict key names and shapes (keys without any wrapper
/// prefix). Throws std::invalid_argument when the keys are not an FEC state_dict.
InferredConfig inferConfig(const ShapeMap& shapes, const ConfigHints& hints = {});

}  // namespace fec
