#include "fec/bench.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

namespace fec {

namespace {

void synchronize(const c10::Device& device)
{
    if (device.is_cuda())
        torch::cuda::synchronize(device.index());
}

}  // namespace

std::vector<BenchResult> runBenchmark(FecModelImpl& model, const c10::Device& device, const BenchOptions& options)
{
    c10::InferenceMode guard;
    model.to(device);
    if (options.dtype != at::kFloat)
        model.to(options.dtype);
    model.eval();
    std::vector<BenchResult> results;
    for (int batch : options.batches) {
        auto input = at::randn({batch, model.config().inChans, options.size, options.size},
                               at::TensorOptions().device(device).dtype(options.dtype));
        auto once = [&] {
            if (options.traced)
                model.forwardTraced(input);
            else
                model.forward(input);
            synchronize(device);
        };
        for (int i = 0; i < options.warmup; ++i)
            once();
        std::vector<double> ms;
        for (int i = 0; i < std::max(1, options.repeats); ++i) {
            const auto start = std::chrono::steady_clock::now();
            once();
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        }
        std::sort(ms.begin(), ms.end());
        const double median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
        BenchResult r;
        r.batch = batch;
        r.latencyMsMedian = median;
        r.latencyMsMin = ms.front();
        r.latencyMsMax = ms.back();
        r.imagesPerSecond = batch * 1000.0 / median;
        results.push_back(r);
    }
    return results;
}

std::string benchResultsJson(const std::vector<BenchResult>& results, const std::string& device, int threads,
                             const std::string& model, int size)
{
    nlohmann::ordered_json j;
    j["results"] = nlohmann::ordered_json::array();
    for (const auto& r : results) {
        j["results"].push_back({{"batch", r.batch},
                                {"images_per_s", r.imagesPerSecond},
                                {"latency_ms_median", r.latencyMsMedian},
                                {"latency_ms_min", r.latencyMsMin},
                                {"latency_ms_max", r.latencyMsMax}});
    }
    j["device"] = device;
    j["threads"] = threads;
    j["model"] = model;
    j["size"] = size;
    return j.dump(2);
}

}  // namespace fec
