#pragma once

// Parallel, ordered batch loading: worker threads decode and transform whole batches ahead of
// the training loop; batches come out in order, and their contents do not depend on the number
// of workers (each sample's randomness is seeded from its index).

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/train/dataset.h"

namespace fec::train {

/// One batch, on the CPU.
struct Batch {
    at::Tensor images;             ///< [B, 3, S, S] float
    at::Tensor labels;             ///< [B] int64
    std::vector<int64_t> indices;  ///< dataset indices of the samples
};

/// Turns one sample into a [3, S, S] float tensor; `seed` is the sample's own seed. Must be
/// thread-safe.
using SampleTransform = std::function<at::Tensor(const Sample& sample, uint64_t seed)>;

/// The batches of one pass over (part of) a dataset.
class Loader {
public:
    /// `batches`: dataset indices of every batch, in order. Sample i gets the seed
    /// mixSeed(epochSeed, i). `workers` 0 loads in the calling thread. Up to `prefetch` batches
    /// (default 2 per worker) are prepared ahead.
    Loader(DatasetPtr dataset, std::vector<std::vector<int64_t>> batches, SampleTransform transform, uint64_t epochSeed,
           int workers, int prefetch = 0);
    ~Loader();
    Loader(const Loader&) = delete;
    Loader& operator=(const Loader&) = delete;

    /// The next batch in order, or nullopt after the last one. Rethrows a worker's exception.
    std::optional<Batch> next();
    size_t batchCount() const { return m_batches.size(); }

private:
    Batch build(size_t index) const;
    void work();

    DatasetPtr m_dataset;
    std::vector<std::vector<int64_t>> m_batches;
    SampleTransform m_transform;
    uint64_t m_seed;
    size_t m_prefetch;

    std::mutex m_mutex;
    std::condition_variable m_ready, m_space;
    std::map<size_t, Batch> m_done;
    std::exception_ptr m_error;
    size_t m_nextToClaim = 0, m_nextToReturn = 0;
    bool m_stop = false;
    std::vector<std::thread> m_threads;
};

/// This rank's training batches of one epoch, torch's DistributedSampler + drop_last: rank r
/// takes order[r], order[r + world], ... and every rank gets floor(n / (world * batch)) full
/// batches, so the union of the ranks' k-th batches is order[k*world*batch, (k+1)*world*batch).
std::vector<std::vector<int64_t>> trainBatches(const std::vector<int64_t>& order, int64_t batch, int rank, int world);

/// This rank's evaluation batches: order[r], order[r + world], ... without padding or dropping
/// (every sample is counted exactly once over all ranks); the last batch may be smaller.
std::vector<std::vector<int64_t>> evalBatches(int64_t n, int64_t batch, int rank, int world);

}  // namespace fec::train
