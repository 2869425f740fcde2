#pragma once

// Dataset statistics for ablation: the mean feature vector of every pyramid level (the pool
// output at every non-empty position, over the images of a dataset). Ablating a segment with
// the `dataset` baseline replaces its feature by this mean (fec/evidence.h, AblationBaseline).
// Written by `fec evidence-stats` (and optionally by the trainer) beside the model as
// "<checkpoint>.evidence-stats.json" with the model file's SHA-1, so that it is never used with
// another model. LibTorch + std only (nlohmann-json, header-only, for the file).
//
// File (JSON, format "fec-evidence-stats", version 1):
//   {"format": "fec-evidence-stats", "version": 1, "model_sha1": "<40 hex>", "data": "...",
//    "input_size": 128, "preprocess": "squash", "images": 10000, "skipped": 0,
//    "levels": [{"level": 1, "dims": 64, "positions": 1234567, "mean": [64 numbers]}, ...]}

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include "fec/model.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"

namespace fec::explain {

/// Version of the file format this build writes and the newest it reads.
constexpr int kEvidenceStatsVersion = 1;

struct EvidenceStats {
    std::string modelSha1;                     ///< fileSha1 of the checkpoint the means belong to
    std::string data;                          ///< dataset description
    int inputSize = 0;                         ///< model input side the means were taken at
    std::string preprocess;                    ///< "squash" or "crop": how images became model inputs
    int64_t images = 0;                        ///< images averaged (unreadable ones skipped)
    int64_t skipped = 0;                       ///< unreadable images skipped
    std::vector<std::string> skippedExamples;  ///< the first few skip messages (not written to the file)
    std::vector<int64_t> positions;            ///< per level: non-empty positions averaged
    std::vector<at::Tensor> levelMeans;        ///< per level 1..L at index 0..L-1: [dims] float32 CPU
};

/// Averages every level's pool output over the non-empty positions (those whose cluster covers
/// at least one pixel block, SegmentPyramid's nonEmpty) of `data`: batched traced forwards on
/// `model`'s device (eval mode is set for the call), each position weighted equally, summed in
/// float64. `workers` threads decode ahead (0: in the calling thread). An image that cannot be
/// read or prepared is skipped and counted (EvidenceStats::skipped), not fatal.
/// `progress(done, total)` after each batch (images, skipped ones included); `cancel` polled
/// between batches: when set, throws std::runtime_error("cancelled") and returns nothing.
/// Throws std::invalid_argument for an empty dataset and std::runtime_error when no image at all
/// could be read. modelSha1 is left empty: the caller knows the file (fileSha1).
EvidenceStats computeEvidenceStats(FecModelImpl& model, const train::Dataset& data, int size, train::EvalResize resize,
                                   int batch = 64, const std::function<void(int64_t, int64_t)>& progress = {},
                                   const std::atomic<bool>* cancel = nullptr, int workers = 1);

/// "<checkpoint>.evidence-stats.json": where the stats of a model live.
std::string evidenceStatsPathFor(const std::string& checkpointPath);

/// Writes the stats as JSON, atomically. Throws std::invalid_argument for stats without a model
/// SHA-1 or levels, std::runtime_error naming the file when it cannot be written.
void writeEvidenceStats(const EvidenceStats& stats, const std::string& path);

/// Reads stats back. Throws std::runtime_error naming the file for a missing, truncated or
/// malformed file (or one written by a newer format version).
EvidenceStats readEvidenceStats(const std::string& path);

/// Checks that `stats` (read from `statsPath`) belong to the model file `checkpointPath` loaded
/// as `model`: throws std::runtime_error naming both hashes for another model file, and naming
/// the level when the number of levels or a level's width differs from the model's.
void checkEvidenceStats(const EvidenceStats& stats, const std::string& statsPath, const std::string& checkpointPath,
                        FecModelImpl& model);

/// readEvidenceStats(statsPath) + checkEvidenceStats.
EvidenceStats loadEvidenceStats(const std::string& statsPath, const std::string& checkpointPath, FecModelImpl& model);

/// The stats beside `checkpointPath`, or nullopt when there is no such file. Throws
/// std::runtime_error naming both hashes when they belong to another model file, naming the
/// level when a level's width differs from the model's, and naming the file when it is
/// truncated or malformed.
std::optional<EvidenceStats> loadEvidenceStatsFor(const std::string& checkpointPath, FecModelImpl& model);

/// AblationOptions::datasetMean for `level` (1-based); throws std::out_of_range naming the range.
at::Tensor datasetMeanFor(const EvidenceStats& stats, int level);

}  // namespace fec::explain
