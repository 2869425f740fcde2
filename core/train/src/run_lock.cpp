#include "fec/train/run_lock.h"

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fec::train {

namespace {

long readPid(int fd)
{
    char buffer[32] = {};
    const ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
    if (n <= 0)
        return 0;
    char* end = nullptr;
    const long pid = std::strtol(buffer, &end, 10);
    return pid > 0 ? pid : 0;
}

std::string busyMessage(const std::string& runDir, long pid)
{
    return "the run folder " + runDir + " is in use by another training process" +
           (pid > 0 ? " (pid " + std::to_string(pid) + ")" : std::string()) +
           ": wait for it to end or stop it, or choose another --out";
}

}  // namespace

RunFolderBusy::RunFolderBusy(const std::string& runDir, long ownerPid)
    : std::runtime_error(busyMessage(runDir, ownerPid)), m_runDir(runDir), m_ownerPid(ownerPid)
{
}

std::string runLockPath(const std::string& runDir)
{
    return (fs::path(runDir) / ".lock").string();
}

RunLock::RunLock(const std::string& runDir)
{
    std::error_code ec;
    fs::create_directories(runDir, ec);
    if (ec)
        throw std::runtime_error("cannot create the run folder " + runDir + ": " + ec.message());
    const auto path = runLockPath(runDir);
    m_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m_fd < 0)
        throw std::runtime_error("cannot create the lock file " + path + ": " + std::strerror(errno));
    // A few tries: runFolderOwner's probe holds a shared lock for an instant.
    int rc = -1;
    for (int attempt = 0; attempt < 5; ++attempt) {
        rc = ::flock(m_fd, LOCK_EX | LOCK_NB);
        if (rc == 0 || (errno != EWOULDBLOCK && errno != EINTR))
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (rc != 0) {
        const int error = errno;
        const long owner = readPid(m_fd);
        ::close(m_fd);
        m_fd = -1;
        if (error == EWOULDBLOCK)
            throw RunFolderBusy(runDir, owner);
        throw std::runtime_error("cannot lock " + path + ": " + std::strerror(error));
    }
    // Ours now; whatever pid a killed owner left is replaced.
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(m_fd, 0) != 0 || ::pwrite(m_fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        const int error = errno;
        ::close(m_fd);
        m_fd = -1;
        throw std::runtime_error("cannot write " + path + ": " + std::strerror(error));
    }
}

RunLock::~RunLock()
{
    // The file stays: removing it would race with a process that has it open and is about to lock.
    if (m_fd >= 0)
        ::close(m_fd);
}

long runFolderOwner(const std::string& runDir)
{
    const int fd = ::open(runLockPath(runDir).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    long owner = 0;
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0)
        ::flock(fd, LOCK_UN);
    else if (errno == EWOULDBLOCK) {
        owner = readPid(fd);
        if (owner == 0)
            owner = -1;
    }
    ::close(fd);
    return owner;
}

}  // namespace fec::train
