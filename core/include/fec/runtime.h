#pragma once

// Process-wide runtime choices: compute device and CPU threads.

#include <cstddef>
#include <exception>
#include <string>

#include <c10/core/Device.h>

namespace fec {

/// Parses "auto", "cpu", "cuda" or "cuda:N". "auto" gives CUDA when a device is present.
/// Throws std::invalid_argument for an unknown name, or for "cuda" without a CUDA device
/// ("CUDA was requested but no CUDA device is available; use --device cpu").
c10::Device selectDevice(const std::string& name);

/// True when LibTorch was built with CUDA and a device is present.
bool cudaAvailable();

/// The CPU thread count used when the user does not choose one: the number of cores.
int defaultThreadCount();

/// Sets LibTorch's intra-op threads (and its OpenMP pool); n <= 0 means defaultThreadCount().
/// Returns the count in effect.
int setThreadCount(int n);

/// Installs a caching CPU allocator for LibTorch: freed blocks are kept (up to `maxCachedBytes`)
/// and handed out again for the same size. Fresh large allocations cost a page fault per 4 KiB
/// on first touch, which on the machines measured made a batch-16 forward 4x slower than the
/// arithmetic itself; repeated forwards allocate the same sizes, so the cache removes that.
/// Idempotent; call before running models.
void installCachingCpuAllocator(std::size_t maxCachedBytes = std::size_t(2) << 30);
/// Frees every cached block (e.g. after closing a model). Returns the bytes released.
std::size_t releaseCachedCpuMemory();
/// Bytes currently held in the cache (not in use by tensors).
std::size_t cachedCpuBytes();

/// TF32 tensor cores for float32 convolutions and matrix products on CUDA. TF32 keeps 10 mantissa
/// bits: about 1e-3 relative error, enough to flip low-margin cluster assignments against the
/// float32 reference (measured: 40 confident flips and 0.02 on the logits of fec_small). Off by
/// default (initRuntime); LibTorch 2.x turns it on for cuDNN unless told otherwise.
void allowTf32(bool allow);

/// installCachingCpuAllocator(), allowTf32(false), glibc malloc kept from unmapping freed blocks up to 32 MiB (same
/// reason), and setThreadCount(threads). Call once at start-up. Returns the thread count.
int initRuntime(int threads);

/// OpenMP busy-waits between parallel regions; with as many threads as cores that starves
/// anything else (20x slowdowns measured on 2 cores). The policy is read once, when the
/// OpenMP runtime loads, so this re-executes the program with OMP_WAIT_POLICY=PASSIVE when
/// the variable is unset. Call first thing in main(); returns only when no re-exec was needed
/// (or it failed).
void ensurePassiveOpenMp(int argc, char** argv);

/// True when `e` says a device ran out of memory (CUDA's allocator: "CUDA out of memory. Tried to
/// allocate ..."). Callers turn it into advice: a smaller batch or input, or the CPU.
bool isOutOfMemory(const std::exception& e);

/// Returns the device memory that LibTorch's CUDA allocator keeps cached but unused to the driver,
/// so that closing a model frees what nvidia-smi shows. No-op without CUDA.
void releaseCachedDeviceMemory();

/// Bytes of CUDA device `index` held by live tensors, and reserved by the caching allocator
/// (0 without CUDA).
std::size_t deviceMemoryAllocated(int index = 0);
std::size_t deviceMemoryReserved(int index = 0);

/// "cpu (2 threads)" / "cuda:0 (NVIDIA H100)".
std::string describeDevice(const c10::Device& device);

}  // namespace fec
