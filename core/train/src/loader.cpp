#include "fec/train/loader.h"

#include <cstring>

#include <ATen/ATen.h>

#include "fec/train/random.h"

namespace fec::train {

Loader::Loader(DatasetPtr dataset, std::vector<std::vector<int64_t>> batches, SampleTransform transform,
               uint64_t epochSeed, int workers, int prefetch)
    : m_dataset(std::move(dataset)), m_batches(std::move(batches)), m_transform(std::move(transform)),
      m_seed(epochSeed), m_prefetch(static_cast<size_t>(prefetch > 0 ? prefetch : 2 * std::max(workers, 1)))
{
    for (int i = 0; i < workers; ++i)
        m_threads.emplace_back([this] { work(); });
}

Loader::~Loader()
{
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_stop = true;
    }
    m_space.notify_all();
    m_ready.notify_all();
    for (auto& t : m_threads)
        t.join();
}

Batch Loader::build(size_t index) const
{
    const auto& ids = m_batches[index];
    Batch batch;
    batch.indices = ids;
    batch.labels = at::empty({static_cast<int64_t>(ids.size())}, at::kLong);
    auto* labels = batch.labels.data_ptr<int64_t>();
    float* images = nullptr;
    size_t sampleFloats = 0;
    for (size_t j = 0; j < ids.size(); ++j) {
        auto sample = m_dataset->get(ids[j]);
        auto x = m_transform(sample, mixSeed(m_seed, static_cast<uint64_t>(ids[j]))).contiguous();
        if (!images) {
            batch.images = at::empty({static_cast<int64_t>(ids.size()), x.size(0), x.size(1), x.size(2)}, at::kFloat);
            images = batch.images.data_ptr<float>();
            sampleFloats = static_cast<size_t>(x.numel());
        }
        TORCH_CHECK(static_cast<size_t>(x.numel()) == sampleFloats && x.scalar_type() == at::kFloat,
                    "the transform returned inputs of different shapes");
        // A plain copy: ATen's copy_ would start an OpenMP team inside this loader thread.
        std::memcpy(images + j * sampleFloats, x.data_ptr<float>(), sampleFloats * sizeof(float));
        labels[j] = sample.label;
    }
    return batch;
}

void Loader::work()
{
    for (;;) {
        size_t index;
        {
            std::unique_lock<std::mutex> lock(m_mutex);
            m_space.wait(lock, [&] {
                return m_stop || m_error || m_nextToClaim >= m_batches.size() ||
                       m_nextToClaim < m_nextToReturn + m_prefetch;
            });
            if (m_stop || m_error || m_nextToClaim >= m_batches.size())
                return;
            index = m_nextToClaim++;
        }
        try {
            auto batch = build(index);
            std::lock_guard<std::mutex> lock(m_mutex);
            m_done.emplace(index, std::move(batch));
        } catch (...) {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (!m_error)
                m_error = std::current_exception();
        }
        m_ready.notify_all();
    }
}

std::optional<Batch> Loader::next()
{
    if (m_nextToReturn >= m_batches.size())
        return std::nullopt;
    if (m_threads.empty())
        return build(m_nextToReturn++);
    std::unique_lock<std::mutex> lock(m_mutex);
    m_ready.wait(lock, [&] { return m_error || m_done.count(m_nextToReturn); });
    if (m_error)
        std::rethrow_exception(m_error);
    auto node = m_done.extract(m_nextToReturn);
    ++m_nextToReturn;
    lock.unlock();
    m_space.notify_all();
    return std::move(node.mapped());
}

std::vector<std::vector<int64_t>> trainBatches(const std::vector<int64_t>& order, int64_t batch, int rank, int world)
{
    TORCH_CHECK(batch > 0 && world > 0 && rank >= 0 && rank < world, "invalid batch / rank / world size");
    const auto n = static_cast<int64_t>(order.size());
    const int64_t steps = n / (batch * world);
    std::vector<std::vector<int64_t>> out(static_cast<size_t>(steps));
    for (int64_t k = 0; k < steps; ++k) {
        auto& b = out[static_cast<size_t>(k)];
        b.reserve(static_cast<size_t>(batch));
        for (int64_t j = 0; j < batch; ++j)
            b.push_back(order[static_cast<size_t>((k * batch + j) * world + rank)]);
    }
    return out;
}

std::vector<std::vector<int64_t>> evalBatches(int64_t n, int64_t batch, int rank, int world)
{
    TORCH_CHECK(batch > 0 && world > 0 && rank >= 0 && rank < world, "invalid batch / rank / world size");
    std::vector<std::vector<int64_t>> out;
    std::vector<int64_t> current;
    for (int64_t i = rank; i < n; i += world) {
        current.push_back(i);
        if (static_cast<int64_t>(current.size()) == batch) {
            out.push_back(std::move(current));
            current.clear();
        }
    }
    if (!current.empty())
        out.push_back(std::move(current));
    return out;
}

}  // namespace fec::train
