#include "cluster_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

namespace fec::detail {

namespace {

// FEC_CLUSTER_KERNELS=0 starts with them off: benchmarks compare both paths in one binary.
bool enabledByEnvironment()
{
    const char* value = std::getenv("FEC_CLUSTER_KERNELS");
    return !(value && std::string(value) == "0");
}

std::atomic<bool> g_enabled{enabledByEnvironment()};

// Work per parallel chunk, in scalar operations: below it a loop stays on the calling thread
// (waking the second OpenMP thread costs more than a few thousand adds here).
constexpr int64_t kGrainOps = 32768;

int64_t grainFor(int64_t opsPerItem)
{
    return std::max<int64_t>(1, kGrainOps / std::max<int64_t>(1, opsPerItem));
}

}  // namespace

bool useClusterKernels(const at::Tensor& x)
{
    return g_enabled.load(std::memory_order_relaxed) && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
           !at::GradMode::is_enabled() && at::hasMKLDNN();
}

void setClusterKernelsEnabled(bool enabled)
{
    g_enabled.store(enabled, std::memory_order_relaxed);
}

at::Tensor groupedCentreDots(const at::Tensor& keys, const at::Tensor& centres)
{
    TORCH_CHECK(keys.dim() == 4 && centres.dim() == 4 && keys.size(0) == centres.size(0) &&
                    keys.size(2) == centres.size(1) && keys.size(3) == centres.size(3),
                "groupedCentreDots: keys ", keys.sizes(), " and centres ", centres.sizes(), " do not match");
    const auto g = keys.size(0), n = keys.size(1), p = keys.size(2), d = keys.size(3), o = centres.size(2);
    // Positions as the pixels of a one-column channels-last image whose channels are the
    // (group, part, component) triples; each (group, part) is one convolution group.
    auto rows = keys.permute({1, 0, 2, 3}).reshape({n, g * p * d}).contiguous();
    auto image = rows.view({1, n, 1, g * p * d}).permute({0, 3, 1, 2});
    auto weight = centres.reshape({g * p * o, d, 1, 1}).contiguous();
    auto out = at::mkldnn_convolution(image, weight, c10::nullopt, {0, 0}, {1, 1}, {1, 1}, g * p);
    return out.permute({0, 2, 3, 1}).reshape({n, g, p, o});
}

at::Tensor clusterRepresentatives(const at::Tensor& vCentres, const at::Tensor& values, const at::Tensor& assign)
{
    TORCH_CHECK(values.dim() == 4 && vCentres.dim() == 4 && assign.dim() == 3, "clusterRepresentatives: bad ranks");
    const auto g = values.size(0), p = values.size(1), n = values.size(2), d = values.size(3), o = vCentres.size(2);
    TORCH_CHECK(vCentres.size(0) == g && vCentres.size(1) == p && vCentres.size(3) == d && assign.size(0) == g &&
                    assign.size(1) == p && assign.size(2) == n && assign.scalar_type() == at::kLong,
                "clusterRepresentatives: values ", values.sizes(), ", centres ", vCentres.sizes(), ", assignment ",
                assign.sizes(), " do not match");
    auto v = values.stride(3) == 1 ? values : values.contiguous();
    auto out = at::empty({g, p, o, d}, values.options());
    const auto vc = vCentres.accessor<float, 4>();
    const auto a = assign.accessor<int64_t, 3>();
    const float* vBase = v.data_ptr<float>();
    const auto vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
    float* outBase = out.data_ptr<float>();
    std::atomic<bool> outOfRange{false};
    at::parallel_for(0, g * p, grainFor(n * d), [&](int64_t b0, int64_t b1) {
        std::vector<float> count(static_cast<size_t>(o));
        for (int64_t gp = b0; gp < b1; ++gp) {
            const auto gi = gp / p, pi = gp % p;
            float* sum = outBase + gp * o * d;
            std::fill(sum, sum + o * d, 0.0f);
            std::fill(count.begin(), count.end(), 0.0f);
            const float* rows = vBase + gi * vs0 + pi * vs1;
            const auto ids = a[gi][pi];
            for (int64_t i = 0; i < n; ++i) {
                const int64_t k = ids[i];
                if (k < 0 || k >= o) {
                    outOfRange = true;
                    return;
                }
                const float* row = rows + i * vs2;
                float* acc = sum + k * d;
                for (int64_t c = 0; c < d; ++c)
                    acc[c] += row[c];
                count[k] += 1.0f;
            }
            const auto centres = vc[gi][pi];
            for (int64_t k = 0; k < o; ++k) {
                const float denominator = count[k] + 1.0f;
                float* rep = sum + k * d;
                for (int64_t c = 0; c < d; ++c)
                    rep[c] = (rep[c] + centres[k][c]) / denominator;
            }
        }
    });
    TORCH_CHECK(!outOfRange, "clusterRepresentatives: an assignment is outside [0, ", o, ")");
    return out;
}

at::Tensor dispatchRepresentatives(const at::Tensor& reps, const at::Tensor& assign, const at::Tensor& weight)
{
    TORCH_CHECK(reps.dim() == 4 && assign.dim() == 3 && weight.dim() == 3 && assign.sizes() == weight.sizes() &&
                    assign.size(0) == reps.size(0) && assign.size(1) == reps.size(1) &&
                    assign.scalar_type() == at::kLong && weight.scalar_type() == at::kFloat,
                "dispatchRepresentatives: representatives ", reps.sizes(), ", assignment ", assign.sizes(),
                ", weights ", weight.sizes(), " do not match");
    const auto g = reps.size(0), p = reps.size(1), o = reps.size(2), d = reps.size(3), n = assign.size(2);
    auto r = reps.contiguous();
    auto out = at::empty({g, n, p * d}, reps.options());
    const float* repBase = r.data_ptr<float>();
    const auto a = assign.accessor<int64_t, 3>();
    const auto w = weight.accessor<float, 3>();
    float* outBase = out.data_ptr<float>();
    std::atomic<bool> outOfRange{false};
    at::parallel_for(0, g * n, grainFor(p * d), [&](int64_t r0, int64_t r1) {
        for (int64_t gn = r0; gn < r1; ++gn) {
            const auto gi = gn / n, i = gn % n;
            float* dst = outBase + gn * p * d;
            for (int64_t pi = 0; pi < p; ++pi) {
                const int64_t k = a[gi][pi][i];
                if (k < 0 || k >= o) {
                    outOfRange = true;
                    return;
                }
                const float scale = w[gi][pi][i];
                const float* src = repBase + ((gi * p + pi) * o + k) * d;
                for (int64_t c = 0; c < d; ++c)
                    dst[pi * d + c] = src[c] * scale;
            }
        }
    });
    TORCH_CHECK(!outOfRange, "dispatchRepresentatives: an assignment is outside [0, ", o, ")");
    return out;
}

}  // namespace fec::detail
