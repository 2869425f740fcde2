#pragma once

// Inference throughput and latency of a model (used by `fec bench` and `fec-bench`).

#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "fec/model.h"

namespace fec {

struct BenchOptions {
    std::vector<int> batches{1, 16};
    int size = 224;
    int warmup = 3;                       ///< untimed runs per batch size
    int repeats = 10;                     ///< timed runs per batch size (the median is reported)
    bool traced = false;                  ///< time forwardTraced (pools + blocks) instead of the plain forward
    c10::ScalarType dtype = c10::kFloat;  ///< kBFloat16/kHalf cast the model and inputs (CUDA; never for parity)
};

struct BenchResult {
    int batch = 0;
    double imagesPerSecond = 0;  ///< batch / median latency
    double latencyMsMedian = 0;  ///< one forward of the whole batch
    double latencyMsMin = 0;
    double latencyMsMax = 0;
};

/// Runs the model on random inputs of each batch size on `device` (inference mode). The model
/// is moved to `device`. `progress(i, total)` may be empty.
std::vector<BenchResult> runBenchmark(FecModelImpl& model, const c10::Device& device, const BenchOptions& options);

/// {"results": [{"batch":..,"images_per_s":..,"latency_ms_median":..}, ...], "device": .., "threads": ..}
std::string benchResultsJson(const std::vector<BenchResult>& results, const std::string& device, int threads,
                             const std::string& model, int size);

}  // namespace fec
