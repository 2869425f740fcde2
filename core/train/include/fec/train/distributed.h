#pragma once

// Data-parallel training over PyTorch's c10d: TCPStore rendezvous (rank 0 serves it),
// ProcessGroupGloo on the CPU (ProcessGroupNCCL for CUDA tensors when LibTorch has it), the
// environment variables torchrun sets, and a launcher that starts one process per rank.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

namespace fec::train {

/// A distributed run that cannot go on: a rank died or timed out, or the rendezvous failed.
class DistError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Where this process sits in the job (torchrun's variables).
struct DistOptions {
    std::string masterAddr = "127.0.0.1";
    int masterPort = 29500;
    int rank = 0, worldSize = 1, localRank = 0;
    std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

/// Reads MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK; nullopt when WORLD_SIZE is
/// unset. Throws std::invalid_argument for malformed or inconsistent values.
std::optional<DistOptions> distOptionsFromEnv();

/// True when this build can create a Gloo process group.
bool glooAvailable();

/// One rank's membership of the process group.
class DistContext {
public:
    /// Joins the job: rank 0 starts the TCPStore server, every rank connects and builds the
    /// process group (Gloo on the CPU; NCCL when `device` is CUDA and LibTorch has it). Waits at
    /// most options.timeout for the others. Throws DistError.
    DistContext(const DistOptions& options, c10::Device device);
    ~DistContext();
    DistContext(const DistContext&) = delete;
    DistContext& operator=(const DistContext&) = delete;

    int rank() const { return m_options.rank; }
    int worldSize() const { return m_options.worldSize; }
    const DistOptions& options() const { return m_options; }

    /// Copies rank `root`'s tensors into every rank's (flattened into a few buckets). All ranks
    /// must pass tensors of the same shapes and types in the same order.
    void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
    /// Averages the defined gradients of `parameters` over the ranks (buckets of about 25 MB)
    /// and sums `extras` (e.g. loss sums, a stop vote) in the same all-reduce; returns the summed
    /// extras. Records `step` as this rank's heartbeat first, so a failure can name the rank
    /// that stopped responding.
    std::vector<double> allReduceGradients(const std::vector<at::Tensor>& parameters, const std::vector<double>& extras,
                                           int64_t step);
    /// Sums values over the ranks.
    std::vector<double> allReduceSum(const std::vector<double>& values);
    void barrier();
    /// Tells the others this rank failed (best effort; they report the message).
    void reportFailure(const std::string& message);

private:
    struct Impl;
    [[noreturn]] void fail(const std::string& operation, const std::exception& error);
    DistOptions m_options;
    c10::Device m_device;
    std::unique_ptr<Impl> m_impl;
    int64_t m_step = -1;
};

/// How the launcher starts the ranks of this node.
struct LaunchOptions {
    int nprocPerNode = 1;
    int nnodes = 1, nodeRank = 0;
    std::string masterAddr = "127.0.0.1";
    int masterPort = 29500;
    /// Intra-op threads per process when the command line does not set --threads
    /// (0: cores / nprocPerNode, at least 1).
    int threadsPerProcess = 0;
    /// The run folder: on node 0 the launcher holds its lock (run_lock.h) until every rank has
    /// ended, and rank 0 relies on it. Empty: no lock.
    std::string runDir;
};

/// Runs `argv` (argv[0] ignored: this executable is re-executed) nprocPerNode times with
/// MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK (and LOCAL_WORLD_SIZE, GROUP_RANK)
/// set, and prints one line per started rank ("rank 1 started (pid 1234)") to `log`. Forwards
/// SIGINT / SIGTERM to the children. When a child fails, the others are terminated (SIGTERM,
/// then SIGKILL after 10 s) and the failure is reported. Returns 0 when every rank succeeded,
/// otherwise the first failing rank's exit status (128 + signal when killed). Throws
/// RunFolderBusy (before starting any rank) when another process holds options.runDir.
int launchWorkers(const std::vector<std::string>& argv, const LaunchOptions& options, std::ostream& log);

}  // namespace fec::train
