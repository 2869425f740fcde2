// Crash safety of saveCheckpoint: a writer process SIGKILLed at random moments never leaves a
// torn or missing checkpoint, nor temporary files that pile up; a full disk gives a clear error
// and keeps the previous file.
//
// The writer is this same executable started with `--writer PATH` (exec'd, not forked, so that
// no LibTorch/OpenMP thread state is copied into it).

#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "fec/atomic_file.h"
#include "fec/checkpoint.h"
#include "reference.h"

extern char** environ;

namespace fs = std::filesystem;

namespace fec {
namespace {

// 2 MiB of float32 filled with the epoch number, so that a reader can tell which save it sees
// and whether the file mixes two saves.
constexpr int64_t kPayload = 512 * 1024;

SaveOptions optionsFor(int epoch, std::map<std::string, pickle::Storage>& storages)
{
    SaveOptions o;
    o.epoch = epoch;
    o.classNames = {"a", "b"};
    storages.clear();
    o.extra.emplace_back("payload", tensorValue(at::full({kPayload}, static_cast<float>(epoch)), storages));
    o.extraStorages = &storages;
    return o;
}

// The writer: saves epoch 1, 2, 3, ... to `path` forever, telling the parent on stdout when each
// save begins and ends. `--once` saves one checkpoint and exits.
int writerMain(const std::string& path, bool once)
{
    auto loaded = loadCheckpoint(test::referencePath("tiny_seed0.pth.tar"));
    std::map<std::string, pickle::Storage> storages;
    int first = 1;
    if (fs::exists(path)) {
        try {
            first = static_cast<int>(pickle::readTorchFile(path).root->get("epoch")->i) + 1;
        } catch (const std::exception&) {
        }
    }
    std::setvbuf(stdout, nullptr, _IONBF, 0);
    std::printf("ready\n");
    for (int epoch = first;; ++epoch) {
        std::printf("begin %d\n", epoch);
        saveCheckpoint(path, *loaded.model, optionsFor(epoch, storages));
        std::printf("saved %d\n", epoch);
        if (once)
            return 0;
    }
}

struct Writer {
    pid_t pid = -1;
    int out = -1;  ///< read end of the writer's stdout
    std::string text;

    // Reads what the writer printed so far (waiting up to `ms` for more).
    void drain(int ms)
    {
        char buf[4096];
        pollfd p{out, POLLIN, 0};
        while (::poll(&p, 1, ms) > 0) {
            const ssize_t n = ::read(out, buf, sizeof buf);
            if (n <= 0)
                break;
            text.append(buf, static_cast<size_t>(n));
            ms = 0;
        }
    }
    // The last "begin N" / "saved N" line.
    int last(const char* word) const
    {
        const auto at = text.rfind(std::string(word) + " ");
        return at == std::string::npos ? 0 : std::atoi(text.c_str() + at + std::strlen(word) + 1);
    }
};

Writer startWriter(const std::string& path, bool once)
{
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipefd[0]);
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    std::vector<std::string> args{self, once ? "--writer-once" : "--writer", path};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    Writer w;
    EXPECT_EQ(posix_spawn(&w.pid, self.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipefd[1]);
    w.out = pipefd[0];
    return w;
}

std::vector<std::string> tempFilesIn(const fs::path& dir)
{
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().find(".tmp-") != std::string::npos)
            out.push_back(e.path().filename().string());
    return out;
}

// The epoch stored in `path`, after checking that the whole file is one consistent save.
int checkCheckpoint(const std::string& path)
{
    const auto archive = pickle::readTorchFile(path);
    const int epoch = static_cast<int>(archive.root->get("epoch")->i);
    const auto payload = archive.root->get("payload");
    EXPECT_TRUE(payload && payload->kind == pickle::Value::Kind::Tensor);
    const auto t = toTensor(payload->tensor, archive.storages.at(payload->tensor.storageKey));
    EXPECT_TRUE(t.eq(static_cast<float>(epoch)).all().item<bool>()) << "a checkpoint mixing two saves";
    loadCheckpoint(path);  // the weights load into a model
    return epoch;
}

class TempDir {
public:
    TempDir() : m_path(fs::temp_directory_path() / ("fec-kill-" + std::to_string(::getpid())))
    {
        fs::create_directories(m_path);
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    const fs::path& path() const { return m_path; }

private:
    fs::path m_path;
};

TEST(CrashSafety, WriterKilledAtRandomMomentsNeverLosesTheCheckpoint)
{
    TempDir dir;
    const auto path = (dir.path() / "last.pth.tar").string();
    std::mt19937 rng(20240611);
    const int kills = 30;
    int midWrite = 0, betweenWrites = 0, lastSaved = 0, maxLeftovers = 0;
    for (int round = 0; round < kills; ++round) {
        Writer w = startWriter(path, false);
        // Wait until the model is loaded, then let it write for a random while.
        for (int i = 0; i < 600 && w.text.find("ready") == std::string::npos; ++i)
            w.drain(50);
        ASSERT_NE(w.text.find("ready"), std::string::npos) << "writer did not start: " << w.text;
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
        ::kill(w.pid, SIGKILL);
        int status = 0;
        ::waitpid(w.pid, &status, 0);
        w.drain(0);
        ::close(w.out);
        ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended by itself: " << w.text;

        const int begun = w.last("begin"), saved = w.last("saved");
        (begun > saved ? midWrite : betweenWrites) += 1;
        lastSaved = std::max(lastSaved, saved);
        if (lastSaved == 0 && !fs::exists(path))
            continue;  // killed before the very first save completed: nothing to check yet
        // The file is the last completed save, or the one in flight if its rename went through.
        const int epoch = checkCheckpoint(path);
        EXPECT_TRUE(epoch == lastSaved || epoch == begun) << "epoch " << epoch << ", saved " << lastSaved;
        lastSaved = std::max(lastSaved, epoch);
        // At most the killed writer's own temporary file is left; the next writer removes it.
        const auto leftovers = tempFilesIn(dir.path());
        maxLeftovers = std::max<int>(maxLeftovers, static_cast<int>(leftovers.size()));
        EXPECT_LE(leftovers.size(), 1u) << leftovers.size() << " temporary files after " << round + 1 << " kills";
    }
    // A final writer that completes cleans whatever a killed one left.
    Writer w = startWriter(path, true);
    int status = 0;
    ::waitpid(w.pid, &status, 0);
    w.drain(0);
    ::close(w.out);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << w.text;
    EXPECT_EQ(checkCheckpoint(path), lastSaved + 1);
    EXPECT_TRUE(tempFilesIn(dir.path()).empty());
    std::cout << "kills: " << kills << " (" << midWrite << " during a save, " << betweenWrites
              << " between saves), saves completed: " << lastSaved + 1
              << ", most temporary files seen: " << maxLeftovers << "\n";
    // The random delays must hit saves in progress, or the test proves nothing.
    EXPECT_GE(midWrite, 5);
}

TEST(CrashSafety, StaleTemporaryFilesOfDeadWritersAreRemoved)
{
    TempDir dir;
    const auto path = (dir.path() / "model.pth").string();
    char host[65] = {};
    ::gethostname(host, sizeof host - 1);
    // A dead process (a reaped child), a live one (ourselves), another host's file, a stranger.
    const pid_t child = ::fork();
    if (child == 0)
        ::_exit(0);
    ::waitpid(child, nullptr, 0);
    std::string tag;
    for (const char* c = host; *c && tag.size() < 32; ++c)
        tag += (std::isalnum(static_cast<unsigned char>(*c)) || *c == '-') ? *c : '_';
    const std::string dead = "model.pth.tmp-" + tag + "-" + std::to_string(child) + "-abc123";
    const std::string live = "model.pth.tmp-" + tag + "-" + std::to_string(::getpid()) + "-abc123";
    const std::string remote = "model.pth.tmp-otherhost-" + std::to_string(child) + "-abc123";
    // Created behind writeFileAtomic's back, in a folder this process has not written to yet.
    const auto other = dir.path() / "sub";
    fs::create_directories(other);
    for (const auto& name : {dead, live, remote, std::string("notes.txt")})
        std::ofstream(other / name) << "x";
    writeFileAtomic((other / "model.pth").string(), std::string("new"));
    EXPECT_FALSE(fs::exists(other / dead));
    EXPECT_TRUE(fs::exists(other / live));
    EXPECT_TRUE(fs::exists(other / remote));
    EXPECT_TRUE(fs::exists(other / "notes.txt"));
    EXPECT_EQ(readFileBytes((other / "model.pth").string()).size(), 3u);
}

// Saves that cannot complete must leave the previous checkpoint as it was and no temporary file.
void expectFailedSaveKeepsOldFile(const fs::path& dir, const std::string& expectedError)
{
    const auto path = (dir / "best.pth.tar").string();
    auto loaded = loadCheckpoint(test::referencePath("tiny_seed0.pth.tar"));
    std::map<std::string, pickle::Storage> small, large;
    SaveOptions first;
    first.epoch = 1;
    saveCheckpoint(path, *loaded.model, first);
    const auto before = readFileBytes(path);
    try {
        saveCheckpoint(path, *loaded.model, optionsFor(2, large));
        FAIL() << "a save larger than the space left succeeded";
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("cannot write " + path + ": " + expectedError), std::string::npos)
            << e.what();
    }
    EXPECT_TRUE(readFileBytes(path) == before) << "the previous checkpoint changed";
    EXPECT_EQ(loadCheckpoint(path).info.extras.front().second, "1");
    EXPECT_TRUE(tempFilesIn(dir).empty());
}

TEST(CrashSafety, FullDiskKeepsThePreviousCheckpoint)
{
    TempDir dir;
    const auto mountPoint = dir.path() / "small-disk";
    fs::create_directories(mountPoint);
    // 1 MiB: room for the tiny model's checkpoint (0.4 MiB), not for one with a 2 MiB payload.
    if (::mount("fec-test", mountPoint.c_str(), "tmpfs", 0, "size=1m") != 0) {
        GTEST_SKIP() << "cannot mount a small tmpfs here (" << std::strerror(errno)
                     << "); the file-size-limit test covers the same path";
    }
    expectFailedSaveKeepsOldFile(mountPoint, "No space left on device");
    EXPECT_EQ(::umount(mountPoint.c_str()), 0);
}

TEST(CrashSafety, FileSizeLimitKeepsThePreviousCheckpoint)
{
    // The same failure without privileges: RLIMIT_FSIZE makes write() fail with EFBIG.
    TempDir dir;
    rlimit old{};
    ::getrlimit(RLIMIT_FSIZE, &old);
    auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limited = old;
    limited.rlim_cur = 1 << 20;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
    expectFailedSaveKeepsOldFile(dir.path(), "File too large");
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, oldHandler);
}

}  // namespace
}  // namespace fec

int main(int argc, char** argv)
{
    if (argc == 3 && (std::strcmp(argv[1], "--writer") == 0 || std::strcmp(argv[1], "--writer-once") == 0))
        return fec::writerMain(argv[2], std::strcmp(argv[1], "--writer-once") == 0);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
