#pragma once

// Shared pieces of the `fec` subcommands (internal to the CLI library).

#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <c10/core/Device.h>

#include "fec/checkpoint.h"
#include "fec/resources.h"
#include "fec/train/dataset.h"

namespace fec::cli {

/// Options every command that loads a checkpoint takes.
struct ModelOptions {
    std::string checkpoint;
    std::string weights = "auto";
    std::string device = "auto";
    std::string heads, headDims, proposals, folds;
};

/// "1,2,3" -> {1, 2, 3}; throws std::invalid_argument naming the option (`what`) otherwise.
std::vector<int> parseIntList(const std::string& text, const char* what);

void addModelOptions(CLI::App& cmd, ModelOptions& options, bool requireCheckpoint);
LoadOptions toLoadOptions(const ModelOptions& options);
/// Loads the checkpoint and moves the model to the chosen device.
LoadedModel loadModel(const ModelOptions& options, c10::Device* device);
/// "state_dict_ema (the file also has state_dict)".
std::string weightsLine(const CheckpointInfo& info);

/// A dataset named by --data (train_commands.cpp): the Fashion-MNIST IDX folder (split "train",
/// else the t10k files; `limit` > 0 keeps the first images) or, with imaging, an image folder
/// (ROOT/<split>/<class>/..., ROOT/val for "test", or ROOT/<class>/...; `limit` > 0 keeps a
/// seeded subset). Throws std::invalid_argument naming the path.
train::DatasetPtr openDataset(const std::string& path, const std::string& split, int64_t limit,
                              const std::vector<std::string>& storedNames);

/// "h:mm:ss" for progress lines and ETAs; "?" for a negative, NaN or absurd value.
std::string clockText(double seconds);

/// Set by the first SIGINT / SIGTERM while a SignalScope lives (a second one ends the process).
extern std::atomic<bool> g_stopRequested;

/// Installs the stop handlers for a long command (and clears g_stopRequested); restores the
/// previous handlers when it goes.
class SignalScope {
public:
    SignalScope();
    ~SignalScope();
    SignalScope(const SignalScope&) = delete;
    SignalScope& operator=(const SignalScope&) = delete;

private:
    struct sigaction m_int {
    }, m_term{};
};

/// A subcommand registered on the app; run() is called when it was given.
class Command {
public:
    explicit Command(CLI::App* app) : m_app(app) {}
    virtual ~Command() = default;
    bool parsed() const { return m_app->parsed(); }
    virtual int run() = 0;

protected:
    CLI::App* m_app;
};

/// Registers `explain` (built only with the figure library).
void addExplainCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands);

/// Registers `evidence-stats` (evidence_stats_command.cpp; needs imaging).
void addEvidenceStatsCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands);

/// Registers `concepts` and `concepts-compare` (concepts_command.cpp; needs imaging).
void addConceptsCommand(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands);

/// Registers `train` and `eval` (train_commands.cpp).
void addTrainCommands(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands);

/// Registers predict, trace (and, with imaging, the commands that read images).
void addImageCommands(CLI::App& app, std::vector<std::unique_ptr<Command>>& commands);

}  // namespace fec::cli
