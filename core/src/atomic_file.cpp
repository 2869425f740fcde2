#include "fec/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _WIN32
#include <fstream>
#include <random>
#include <windows.h>
#else
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <set>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace fec {

namespace {

std::string osError(int err)
{
    return std::strerror(err);
}

[[noreturn]] void failWrite(const std::string& path, int err)
{
    throw std::runtime_error("cannot write " + path + ": " + osError(err));
}

#ifndef _WIN32

std::string parentFolder(const std::string& path)
{
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos)
        return ".";
    if (slash == 0)
        return "/";
    return path.substr(0, slash);
}

// Removes the temporary file unless the rename went through.
struct TempFile {
    std::string name;
    int fd = -1;
    bool keep = false;
    ~TempFile()
    {
        if (fd >= 0)
            ::close(fd);
        if (!keep && !name.empty())
            ::unlink(name.c_str());
    }
};

// This machine's name as it appears in temporary file names.
std::string hostTag()
{
    char host[65] = {};
    ::gethostname(host, sizeof host - 1);
    std::string clean;
    for (const char* c = host; *c && clean.size() < 32; ++c)
        clean += (std::isalnum(static_cast<unsigned char>(*c)) || *c == '-') ? *c : '_';
    return clean;
}

// "<name>.tmp-<host>-<pid>-": the prefix of this process's temporary files next to `path`.
std::string tempPrefix(const std::string& path)
{
    return path + ".tmp-" + hostTag() + "-" + std::to_string(::getpid()) + "-";
}

// A writer killed between creating its temporary file and the rename leaves the file behind.
// Once per folder and process, remove such leftovers: temporary files named by this host whose
// process no longer exists (a live writer's file is never touched).
void removeStaleTemps(const std::string& folder)
{
    static std::mutex mutex;
    static std::set<std::string> cleaned;
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!cleaned.insert(folder).second)
            return;
    }
    const std::string hostPart = ".tmp-" + hostTag() + "-";
    DIR* dir = ::opendir(folder.c_str());
    if (!dir)
        return;
    std::vector<std::string> stale;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        const auto at = name.rfind(hostPart);
        if (at == std::string::npos || at == 0)
            continue;
        const char* pidText = name.c_str() + at + hostPart.size();
        char* end = nullptr;
        const long pid = std::strtol(pidText, &end, 10);
        if (end == pidText || *end != '-' || pid <= 0 || std::strlen(end + 1) != 6)
            continue;
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
            stale.push_back(folder + "/" + name);
    }
    ::closedir(dir);
    for (const auto& name : stale)
        ::unlink(name.c_str());
}

void writeAll(int fd, const std::string& path, const void* data, std::size_t size)
{
    const char* p = static_cast<const char*>(data);
    std::size_t left = size;
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            failWrite(path, errno);
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

#endif

}  // namespace

#ifndef _WIN32

void writeFileAtomic(const std::string& path, const void* data, std::size_t size)
{
    if (path.empty())
        throw std::runtime_error("cannot write an empty file name");
    const std::string folder = parentFolder(path);
    removeStaleTemps(folder);

    // mkstemp creates the file 0600; keep the mode of a file being replaced, else the usual 0644.
    struct stat st {};
    const mode_t mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;

    TempFile tmp;
    // An unnamed file (O_TMPFILE) vanishes by itself if the process dies while writing; it gets
    // a name only for the instant before the rename. File systems without it get a named one.
    bool unnamed = false;
#ifdef O_TMPFILE
    tmp.fd = ::open(folder.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    unnamed = tmp.fd >= 0;
#endif
    std::vector<char> pattern;
    if (!unnamed) {
        const std::string prefix = tempPrefix(path) + "XXXXXX";
        pattern.assign(prefix.begin(), prefix.end());
        pattern.push_back('\0');
        tmp.fd = ::mkstemp(pattern.data());
        if (tmp.fd < 0)
            failWrite(path, errno);
        tmp.name = pattern.data();
    }
    if (::fchmod(tmp.fd, mode) != 0)
        failWrite(path, errno);
    writeAll(tmp.fd, path, data, size);
    if (::fsync(tmp.fd) != 0)
        failWrite(path, errno);
    if (unnamed) {
        // linkat cannot replace a file: link under a temporary name, then rename over `path`.
        const std::string procPath = "/proc/self/fd/" + std::to_string(tmp.fd);
        for (int attempt = 0; attempt < 100 && tmp.name.empty(); ++attempt) {
            const std::string name = tempPrefix(path) + std::to_string(100000 + (std::rand() % 900000));
            if (::linkat(AT_FDCWD, procPath.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0)
                tmp.name = name;
            else if (errno != EEXIST)
                failWrite(path, errno);
        }
        if (tmp.name.empty())
            failWrite(path, EEXIST);
    }
    const int fd = tmp.fd;
    tmp.fd = -1;
    if (::close(fd) != 0)
        failWrite(path, errno);
    if (::rename(tmp.name.c_str(), path.c_str()) != 0)
        failWrite(path, errno);
    tmp.keep = true;

    // Makes the rename itself durable. The new file is already in place, so a failure here
    // (some file systems refuse fsync on folders) is not reported.
    const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
}

std::vector<uint8_t> readFileBytes(const std::string& path, uint64_t maxBytes)
{
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It does
    // not change how regular files are read.
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        throw std::runtime_error("cannot open " + path + ": " + osError(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};

    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw std::runtime_error("cannot read " + path + ": " + osError(errno));
    if (S_ISDIR(st.st_mode))
        throw std::runtime_error(path + " is a directory");
    if (!S_ISREG(st.st_mode))
        throw std::runtime_error(path + " is not a regular file");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > maxBytes)
        throw std::runtime_error(path + " is too large (" + std::to_string(size) + " bytes, the limit is " +
                                 std::to_string(maxBytes) + ")");

    std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::runtime_error("cannot read " + path + ": " + osError(errno));
        }
        if (n == 0)
            throw std::runtime_error("cannot read " + path + ": the file shrank while it was being read");
        done += static_cast<std::size_t>(n);
    }
    return bytes;
}

#else

void writeFileAtomic(const std::string& path, const void* data, std::size_t size)
{
    if (path.empty())
        throw std::runtime_error("cannot write an empty file name");
    std::random_device rd;
    const std::string tmp = path + ".tmp-" + std::to_string(rd());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out)
            failWrite(path, errno);
        out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
        out.flush();
        if (!out) {
            const int err = errno;
            out.close();
            std::remove(tmp.c_str());
            failWrite(path, err);
        }
    }
    if (!MoveFileExA(tmp.c_str(), path.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot write " + path + ": rename failed (error " + std::to_string(GetLastError()) +
                                 ")");
    }
}

std::vector<uint8_t> readFileBytes(const std::string& path, uint64_t maxBytes)
{
    const DWORD attributes = GetFileAttributesA(path.c_str());
    if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY))
        throw std::runtime_error(path + " is a directory");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in)
        throw std::runtime_error("cannot open " + path + ": " + osError(errno));
    const auto end = in.tellg();
    if (end < 0)
        throw std::runtime_error("cannot read " + path);
    const uint64_t size = static_cast<uint64_t>(end);
    if (size > maxBytes)
        throw std::runtime_error(path + " is too large (" + std::to_string(size) + " bytes, the limit is " +
                                 std::to_string(maxBytes) + ")");
    std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
        throw std::runtime_error("cannot read " + path);
    return bytes;
}

#endif

void writeFileAtomic(const std::string& path, const std::vector<uint8_t>& bytes)
{
    writeFileAtomic(path, bytes.data(), bytes.size());
}

void writeFileAtomic(const std::string& path, const std::string& text)
{
    writeFileAtomic(path, text.data(), text.size());
}

}  // namespace fec
