#pragma once

// Dataset statistics for ablation: the mean feature vector of every pyramid level (the pool
// output at every non-empty position, over the images of a dataset). Ablating a segment with
// the `dataset` baseline replaces its feature by this mean (fec/evidence.h, AblationBaseline).
// Written by `fec evidence-stats` (and optionally by the trainer) beside the model as
// "<checkpoint>.evidence-stats.json" with the model file's SHA-1, so that it is never used with
// another model. LibTorch + std only.

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

struct EvidenceStats {
    std::string modelSha1;               ///< fileSha1 of the checkpoint the means belong to
    std::string data;                    ///< dataset description
    int inputSize = 0;                   ///< model input side the means were taken at
    int64_t images = 0;                  ///< images averaged (unreadable ones skipped)
    std::vector<int64_t> positions;      ///< per level: non-empty positions averaged
    std::vector<at::Tensor> levelMeans;  ///< per level 1..L at index 0..L-1: [dims] float32 CPU
};

/// Averages every level's pool output over the non-empty positions of `data` (batched traced
/// forwards on `model`'s device; `progress(done, total)` after each batch; `cancel` polled between
/// batches: when set, throws std::runtime_error("cancelled") and returns nothing).
EvidenceStats computeEvidenceStats(FecModelImpl& model, const train::Dataset& data, int size,
                                   train::EvalResize resize, int batch = 64,
                                   const std::function<void(int64_t, int64_t)>& progress = {},
                                   const std::atomic<bool>* cancel = nullptr);

/// "<checkpoint>.evidence-stats.json": where the stats of a model live.
std::string evidenceStatsPathFor(const std::string& checkpointPath);

/// Writes the stats as JSON, atomically. Throws std::runtime_error naming the file.
void writeEvidenceStats(const EvidenceStats& stats, const std::string& path);

/// Reads stats back. Throws std::runtime_error naming the file for a missing, truncated or
/// malformed file.
EvidenceStats readEvidenceStats(const std::string& path);

/// The stats beside `checkpointPath`, or nullopt when there is no such file. Throws
/// std::runtime_error naming both hashes when they belong to another model file, and naming the
/// level when a level's width differs from the model's.
std::optional<EvidenceStats> loadEvidenceStatsFor(const std::string& checkpointPath, FecModelImpl& model);

/// AblationOptions::datasetMean for `level` (1-based); throws std::out_of_range naming the range.
at::Tensor datasetMeanFor(const EvidenceStats& stats, int level);

}  // namespace fec::explain
