#pragma once

// One process per run folder: an advisory lock (flock) on RUN_DIR/.lock, held for the whole run,
// with the owner's pid written into the file. The kernel drops a flock lock when its process
// ends, so a lock file left by a killed process does not block the next run.

#include <stdexcept>
#include <string>

namespace fec::train {

/// A run folder another process is training into.
class RunFolderBusy : public std::runtime_error {
public:
    RunFolderBusy(const std::string& runDir, long ownerPid);
    const std::string& runDir() const { return m_runDir; }
    /// The owner's pid as its lock file gives it (0 when unreadable).
    long ownerPid() const { return m_ownerPid; }

private:
    std::string m_runDir;
    long m_ownerPid = 0;
};

/// RUN_DIR/.lock.
std::string runLockPath(const std::string& runDir);

/// Set by the `--nproc-per-node` launcher in its ranks' environment to its own pid: the launcher
/// owns the run folder, so rank 0 does not lock it again.
inline constexpr const char* kRunLockOwnerEnv = "FEC_RUN_LOCK_OWNER";

/// Exclusive ownership of a run folder for as long as the object lives (the process's exit
/// releases it too). The descriptor is opened O_CLOEXEC: programs this process executes do not
/// inherit the lock.
class RunLock {
public:
    /// Creates the folder when needed, opens RUN_DIR/.lock, takes flock(LOCK_EX | LOCK_NB) and
    /// writes this process's pid into the file. Throws RunFolderBusy when another process (or
    /// another RunLock of this one) holds the folder, std::runtime_error when the file cannot be
    /// created.
    explicit RunLock(const std::string& runDir);
    ~RunLock();
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

private:
    int m_fd = -1;
};

/// The pid of the process holding the folder's lock (-1 when held but its pid is not written
/// yet); 0 when nobody holds it (no lock file, or one a finished or killed process left behind).
/// Probes with a shared lock taken and dropped at once; RunLock retries briefly, so a probe does
/// not turn a start away.
long runFolderOwner(const std::string& runDir);

}  // namespace fec::train
