// The `--nproc-per-node` launcher: torchrun's job for this program, without Python.

#include "fec/train/distributed.h"

#include <memory>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
#include <vector>

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fec/train/run_lock.h"

namespace fec::train {

namespace {

volatile std::sig_atomic_t g_pendingSignal = 0;

extern "C" void onLauncherSignal(int sig)
{
    g_pendingSignal = sig;
}

std::string describeStatus(int status)
{
    if (WIFEXITED(status))
        return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
    return "status " + std::to_string(status);
}

int exitCodeOf(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

}  // namespace

int launchWorkers(const std::vector<std::string>& argv, const LaunchOptions& o, std::ostream& log)
{
    if (o.nprocPerNode < 1 || o.nnodes < 1 || o.nodeRank < 0 || o.nodeRank >= o.nnodes)
        throw std::invalid_argument("--nproc-per-node must be >= 1 and --node-rank in [0, --nnodes)");
    if (o.masterPort < 1 || o.masterPort > 65535)
        throw std::invalid_argument("--master-port must be a TCP port (1-65535)");
    const int world = o.nprocPerNode * o.nnodes;
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const int threads =
        o.threadsPerProcess > 0 ? o.threadsPerProcess : std::max(1, static_cast<int>(cores) / o.nprocPerNode);
    // The launcher of node 0 owns the run folder for the whole job (rank 0, its child, writes it);
    // a second start is refused here, before any rank exists.
    std::unique_ptr<RunLock> runLock;
    if (!o.runDir.empty() && o.nodeRank == 0)
        runLock = std::make_unique<RunLock>(o.runDir);

    struct sigaction action {};
    action.sa_handler = onLauncherSignal;
    sigemptyset(&action.sa_mask);
    struct sigaction oldInt {
    }, oldTerm{};
    sigaction(SIGINT, &action, &oldInt);
    sigaction(SIGTERM, &action, &oldTerm);
    g_pendingSignal = 0;

    struct Child {
        pid_t pid = -1;
        int rank = 0;
        bool running = false;
        int status = 0;
    };
    std::vector<Child> children;
    const pid_t launcher = getpid();
    for (int local = 0; local < o.nprocPerNode; ++local) {
        Child child;
        child.rank = o.nodeRank * o.nprocPerNode + local;
        const pid_t pid = fork();
        if (pid < 0) {
            log << "fec train: cannot start rank " << child.rank << ": " << std::strerror(errno) << "\n";
            for (auto& c : children)
                kill(c.pid, SIGKILL);
            for (auto& c : children)
                waitpid(c.pid, nullptr, 0);
            sigaction(SIGINT, &oldInt, nullptr);
            sigaction(SIGTERM, &oldTerm, nullptr);
            return 1;
        }
        if (pid == 0) {
            // Own process group (a terminal's Ctrl-C reaches the launcher, which forwards it once);
            // terminated if the launcher dies.
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != launcher)
                _exit(1);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            setenv("MASTER_ADDR", o.masterAddr.c_str(), 1);
            setenv("MASTER_PORT", std::to_string(o.masterPort).c_str(), 1);
            setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
            setenv("RANK", std::to_string(child.rank).c_str(), 1);
            setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
            setenv("LOCAL_WORLD_SIZE", std::to_string(o.nprocPerNode).c_str(), 1);
            setenv("GROUP_RANK", std::to_string(o.nodeRank).c_str(), 1);
            setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 0);
            if (runLock)
                setenv(kRunLockOwnerEnv, std::to_string(launcher).c_str(), 1);
            else
                unsetenv(kRunLockOwnerEnv);
            std::vector<char*> args;
            args.push_back(const_cast<char*>("/proc/self/exe"));
            for (size_t i = 1; i < argv.size(); ++i)
                args.push_back(const_cast<char*>(argv[i].c_str()));
            args.push_back(nullptr);
            execv("/proc/self/exe", args.data());
            const char* msg = "fec train: cannot re-execute the program for a rank\n";
            (void)!write(2, msg, std::strlen(msg));
            _exit(127);
        }
        child.pid = pid;
        child.running = true;
        children.push_back(child);
        log << "fec train: rank " << child.rank << " of " << world << " started (pid " << pid << ")\n";
        log.flush();
    }

    int failedRank = -1, failedStatus = 0;
    bool terminating = false;
    auto terminateStart = std::chrono::steady_clock::now();
    auto running = [&] {
        for (const auto& c : children)
            if (c.running)
                return true;
        return false;
    };
    while (running()) {
        if (const int sig = g_pendingSignal) {
            g_pendingSignal = 0;
            for (const auto& c : children)
                if (c.running)
                    kill(c.pid, sig);
        }
        int status = 0;
        const pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (auto& c : children) {
                if (c.pid != pid)
                    continue;
                c.running = false;
                c.status = status;
                const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (!ok && failedRank < 0 && !terminating) {
                    failedRank = c.rank;
                    failedStatus = status;
                    log << "fec train: rank " << c.rank << " (pid " << pid << ") failed: " << describeStatus(status)
                        << "; stopping the other ranks\n";
                    log.flush();
                    terminating = true;
                    terminateStart = std::chrono::steady_clock::now();
                    for (const auto& other : children)
                        if (other.running)
                            kill(other.pid, SIGTERM);
                }
            }
            continue;
        }
        if (terminating && std::chrono::steady_clock::now() - terminateStart > std::chrono::seconds(10)) {
            for (const auto& c : children)
                if (c.running)
                    kill(c.pid, SIGKILL);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    sigaction(SIGINT, &oldInt, nullptr);
    sigaction(SIGTERM, &oldTerm, nullptr);
    if (failedRank >= 0)
        return std::max(1, exitCodeOf(failedStatus));
    for (const auto& c : children)
        if (!(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0))
            return std::max(1, exitCodeOf(c.status));
    return 0;
}

}  // namespace fec::train
