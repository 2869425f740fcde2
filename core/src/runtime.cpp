#include "fec/runtime.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <malloc.h>
#include <mutex>
#include <unordered_map>
#include <stdexcept>
#include <thread>
#include <vector>

#include <unistd.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/cuda.h>
#ifdef FEC_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace fec {

namespace {

// Keeps freed CPU blocks by exact size for reuse (see installCachingCpuAllocator).
class CachingCpuAllocator final : public c10::Allocator {
public:
    explicit CachingCpuAllocator(std::size_t maxCached) : m_maxCached(maxCached) {}

    // LibTorch 1.13 declares allocate() const; 2.x made it non-const and added copy_data().
    // Declaring both signatures (without `override`) overrides whichever the base has.
    c10::DataPtr allocate(std::size_t bytes) const { return allocateBlock(bytes); }
    c10::DataPtr allocate(std::size_t bytes) { return allocateBlock(bytes); }
    void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

    c10::DataPtr allocateBlock(std::size_t bytes) const
    {
        if (bytes == 0)
            return {nullptr, nullptr, &release, c10::Device(c10::kCPU)};
        void* p = state().take(bytes);
        if (!p && posix_memalign(&p, 64, bytes) != 0)
            throw std::bad_alloc();
        state().track(p, bytes);
        return {p, p, &release, c10::Device(c10::kCPU)};
    }

    c10::DeleterFnPtr raw_deleter() const override { return &release; }

    struct State {
        std::mutex mutex;
        std::unordered_map<std::size_t, std::vector<void*>> free;
        std::unordered_map<void*, std::size_t> live;
        std::size_t cached = 0;
        std::size_t maxCached = 0;

        void* take(std::size_t bytes)
        {
            std::lock_guard<std::mutex> lock(mutex);
            auto it = free.find(bytes);
            if (it == free.end() || it->second.empty())
                return nullptr;
            void* p = it->second.back();
            it->second.pop_back();
            cached -= bytes;
            return p;
        }
        void track(void* p, std::size_t bytes)
        {
            std::lock_guard<std::mutex> lock(mutex);
            live[p] = bytes;
        }
    };

    static State& state()
    {
        static State s;
        return s;
    }

    static void release(void* p)
    {
        if (!p)
            return;
        auto& s = state();
        std::lock_guard<std::mutex> lock(s.mutex);
        auto it = s.live.find(p);
        const std::size_t bytes = it == s.live.end() ? 0 : it->second;
        if (it != s.live.end())
            s.live.erase(it);
        if (bytes == 0 || s.cached + bytes > s.maxCached) {
            std::free(p);
            return;
        }
        s.free[bytes].push_back(p);
        s.cached += bytes;
    }

private:
    std::size_t m_maxCached;
};

}  // namespace

void installCachingCpuAllocator(std::size_t maxCachedBytes)
{
    static std::once_flag once;
    std::call_once(once, [&] {
        static CachingCpuAllocator allocator(maxCachedBytes);
        CachingCpuAllocator::state().maxCached = maxCachedBytes;
        c10::SetCPUAllocator(&allocator, /*priority=*/100);
    });
}

std::size_t releaseCachedCpuMemory()
{
    auto& s = CachingCpuAllocator::state();
    std::lock_guard<std::mutex> lock(s.mutex);
    const std::size_t released = s.cached;
    for (auto& [bytes, blocks] : s.free)
        for (void* p : blocks)
            std::free(p);
    s.free.clear();
    s.cached = 0;
    return released;
}

std::size_t cachedCpuBytes()
{
    auto& s = CachingCpuAllocator::state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.cached;
}

int initRuntime(int threads)
{
    installCachingCpuAllocator();
    // The same page-fault cost hits other large buffers (OpenCV images, Qt pixmaps): serve
    // blocks up to 32 MiB (glibc's maximum) from the heap and never trim it, so that the next
    // image of the same size reuses mapped pages. (Disabling mmap altogether made LibTorch 25 %
    // slower here, so larger blocks still come from mmap.)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
    allowTf32(false);  // float32 means float32: results match the reference on any device
    return setThreadCount(threads);
}

bool cudaAvailable()
{
    return torch::cuda::is_available();
}

c10::Device selectDevice(const std::string& name)
{
    if (name == "auto" || name.empty())
        return cudaAvailable() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    if (name == "cpu")
        return c10::Device(c10::kCPU);
    if (name.rfind("cuda", 0) == 0) {
        if (!cudaAvailable())
            throw std::invalid_argument("CUDA was requested but no CUDA device is available; use --device cpu");
        try {
            c10::Device device(name);
            if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
                throw std::invalid_argument("there is no CUDA device " + std::to_string(device.index()));
            return device.has_index() ? device : c10::Device(c10::kCUDA, 0);
        } catch (const c10::Error&) {
            throw std::invalid_argument("invalid device '" + name + "'");
        }
    }
    throw std::invalid_argument("--device must be auto, cpu or cuda (got '" + name + "')");
}

int defaultThreadCount()
{
    const unsigned cores = std::thread::hardware_concurrency();
    return cores == 0 ? 1 : static_cast<int>(cores);
}

int setThreadCount(int n)
{
    const int count = n > 0 ? n : defaultThreadCount();
    at::set_num_threads(count);
    return at::get_num_threads();
}

void ensurePassiveOpenMp(int argc, char** argv)
{
    if (std::getenv("OMP_WAIT_POLICY") || argc < 1)
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    std::vector<char*> args(argv, argv + argc);
    args.push_back(nullptr);
    execv("/proc/self/exe", args.data());
    // execv only returns on failure; carry on with the active policy.
}

void allowTf32(bool allow)
{
    at::globalContext().setAllowTF32CuDNN(allow);
    at::globalContext().setAllowTF32CuBLAS(allow);
}

bool isOutOfMemory(const std::exception& e)
{
    const auto* error = dynamic_cast<const c10::Error*>(&e);
    const std::string message = error ? error->what_without_backtrace() : e.what();
    return message.find("out of memory") != std::string::npos;
}

void releaseCachedDeviceMemory()
{
#ifdef FEC_WITH_CUDA
    if (cudaAvailable())
        c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

std::size_t deviceMemoryAllocated(int index)
{
#ifdef FEC_WITH_CUDA
    if (cudaAvailable())
        return static_cast<std::size_t>(
            c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index))
                .allocated_bytes[0]
                .current);
#endif
    (void)index;
    return 0;
}

std::size_t deviceMemoryReserved(int index)
{
#ifdef FEC_WITH_CUDA
    if (cudaAvailable())
        return static_cast<std::size_t>(
            c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index))
                .reserved_bytes[0]
                .current);
#endif
    (void)index;
    return 0;
}

std::string describeDevice(const c10::Device& device)
{
    if (device.is_cpu()) {
        const int threads = at::get_num_threads();
        return "cpu (" + std::to_string(threads) + (threads == 1 ? " thread)" : " threads)");
    }
    return device.str();
}

}  // namespace fec
