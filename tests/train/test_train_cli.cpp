// `fec train` and `fec eval` as users and the GUI run them: evaluation output and CSV, stopping
// with a signal and resuming, and c10d data parallelism on loopback (equivalence with one
// process, and a clear failure when a rank dies).

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "fec/checkpoint.h"
#include "fec/train/distributed.h"
#include "train_test_util.h"

extern char** environ;

namespace fs = std::filesystem;

namespace fec::train {
namespace {

using test::TempDir;

// The tiny architecture as `fec train` flags.
const std::vector<std::string> kTinyArch{
    "--layers", "1,1,1,1",      "--dims",  "16,32,48,64", "--heads", "2,2,2,2", "--head-dims",
    "8,8,8,8",  "--mlp-ratios", "2,2,2,2", "--proposals", "2,2,1,1", "--size",  "32"};

struct Child {
    pid_t pid = -1;
    std::string out, err;
};

Child spawn(const std::vector<std::string>& args, const std::string& out, const std::string& err,
            const std::vector<std::string>& extraEnv = {})
{
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        const std::string entry(*e);
        bool replaced = false;
        for (const auto& x : extraEnv)
            if (entry.substr(0, entry.find('=') + 1) == x.substr(0, x.find('=') + 1))
                replaced = true;
        if (!replaced)
            env.push_back(entry);
    }
    env.insert(env.end(), extraEnv.begin(), extraEnv.end());
    env.push_back("OMP_WAIT_POLICY=PASSIVE");
    std::vector<char*> argv{const_cast<char*>(FEC_BINARY)}, envp;
    for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (auto& e : env)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    Child c;
    c.out = out;
    c.err = err;
    const int rc = posix_spawn(&c.pid, FEC_BINARY, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        throw std::runtime_error(std::string("cannot start fec: ") + std::strerror(rc));
    return c;
}

// Waits up to `seconds`; returns the wait status, or -1 on timeout (the child is then killed).
int waitFor(const Child& c, double seconds)
{
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        const pid_t r = waitpid(c.pid, &status, WNOHANG);
        if (r == c.pid)
            return status;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(c.pid, SIGKILL);
    waitpid(c.pid, &status, 0);
    return -1;
}

int runFec(const std::vector<std::string>& args, const TempDir& dir, const std::string& name, double seconds = 120,
           const std::vector<std::string>& env = {})
{
    auto c = spawn(args, dir.file(name + ".out"), dir.file(name + ".err"), env);
    const int status = waitFor(c, seconds);
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int freePort()
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const int port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

// Largest train step logged so far in RUN_DIR/metrics.jsonl.
int64_t loggedStep(const std::string& runDir)
{
    std::ifstream in(runDir + "/metrics.jsonl");
    int64_t step = 0;
    for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.value("phase", "") == "train")
            step = std::max<int64_t>(step, j.value("step", int64_t(0)));
    }
    return step;
}

bool waitForStep(const std::string& runDir, int64_t step, double seconds)
{
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
        if (loggedStep(runDir) >= step)
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b)
{
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<std::string> tinyRun(const std::string& out, const std::vector<std::string>& extra, int trainImages = 256)
{
    return concat(concat({"--threads", "1", "train", "--data", test::fashionMnistDir(), "--out", out, "--train-limit",
                          std::to_string(trainImages), "--val-limit", "64", "--workers", "1", "--log-every", "1"},
                         kTinyArch),
                  extra);
}

TEST(TrainCli, EvalPrintsTopOneTopFiveAndWritesTheConfusionMatrix)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    const auto run = dir.file("run");
    ASSERT_EQ(runFec(tinyRun(run, {"--batch", "32", "--epochs", "1", "--lr", "3e-3"}), dir, "train"), 0)
        << test::readText(dir.file("train.err"));
    // The checkpoint reports the stored architecture, class names and input size.
    auto loaded = loadCheckpoint(run + "/last.pth.tar");
    EXPECT_TRUE(loaded.info.configStored);
    EXPECT_EQ(loaded.info.inferred.config.dims, (StageInts{16, 32, 48, 64}));
    EXPECT_EQ(loaded.info.classNames.size(), 10u);
    EXPECT_EQ(loaded.info.classNames[0], "T-shirt/top");
    EXPECT_EQ(loaded.info.inputSize, 32);

    const auto csv = dir.file("confusion.csv");
    ASSERT_EQ(runFec({"--threads", "1", "eval", "--checkpoint", run + "/last.pth.tar", "--data",
                      test::fashionMnistDir(), "--split", "test", "--limit", "300", "--confusion", csv},
                     dir, "eval"),
              0)
        << test::readText(dir.file("eval.err"));
    const auto out = test::readText(dir.file("eval.out"));
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        out, m, std::regex(R"(top-1: ([0-9.]+)%  top-5: ([0-9.]+)%  loss: ([0-9.]+)  \(300 images\))")))
        << out;
    const double top1 = std::stod(m[1]), top5 = std::stod(m[2]);
    EXPECT_GE(top5, top1);
    EXPECT_GT(top5, 50.0);

    std::ifstream in(csv);
    std::vector<std::vector<std::string>> rows;
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> cells;
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, ',');)
            cells.push_back(cell);
        rows.push_back(cells);
    }
    ASSERT_EQ(rows.size(), 11u);
    EXPECT_EQ(rows[0][1], "T-shirt/top");
    EXPECT_EQ(rows[0][10], "Ankle boot");
    int64_t total = 0, diagonal = 0;
    for (size_t r = 1; r < rows.size(); ++r) {
        ASSERT_EQ(rows[r].size(), 11u);
        EXPECT_EQ(rows[r][0], rows[0][r]);
        for (size_t c = 1; c < rows[r].size(); ++c) {
            total += std::stoll(rows[r][c]);
            if (c == r)
                diagonal += std::stoll(rows[r][c]);
        }
    }
    EXPECT_EQ(total, 300);
    EXPECT_NEAR(100.0 * diagonal / total, top1, 0.01);
}

TEST(TrainCli, SignalStopsAtAStepBoundaryAndResumeFinishesTheRun)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    const auto run = dir.file("run");
    auto c = spawn(tinyRun(run, {"--batch", "8", "--epochs", "1"}, 2048), dir.file("a.out"), dir.file("a.err"));
    ASSERT_TRUE(waitForStep(run, 3, 60)) << test::readText(dir.file("a.err"));
    kill(c.pid, SIGINT);
    const int status = waitFor(c, 60);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << test::readText(dir.file("a.err"));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    const auto err = test::readText(dir.file("a.err"));
    EXPECT_NE(err.find("stopped at step"), std::string::npos) << err;
    const auto stoppedAt = loggedStep(run);
    EXPECT_LT(stoppedAt, 256);
    ASSERT_TRUE(fs::exists(run + "/last.pth.tar"));

    // --resume needs no other flag: data and settings come from run.json.
    ASSERT_EQ(runFec({"--threads", "1", "train", "--resume", "--out", run}, dir, "b"), 0)
        << test::readText(dir.file("b.err"));
    EXPECT_NE(test::readText(dir.file("b.err")).find("resuming from"), std::string::npos);
    EXPECT_EQ(loggedStep(run), 256); // 2048 images / 8 per step
}

TEST(TrainCliDistributed, TwoProcessesMatchOneProcessWithTheDoubleBatch)
{
    FEC_REQUIRE_FASHION_MNIST();
    if (!glooAvailable())
        GTEST_SKIP() << "built without Gloo headers (libgloo-dev)";
    TempDir dir;
    const std::vector<std::string> exact{"--no-augment", "--smoothing", "0", "--drop-path", "0", "--max-steps", "4"};
    ASSERT_EQ(runFec(tinyRun(dir.file("one"), concat({"--batch", "16"}, exact)), dir, "one"), 0)
        << test::readText(dir.file("one.err"));
    ASSERT_EQ(runFec(tinyRun(dir.file("two"), concat({"--batch", "8", "--nproc-per-node", "2", "--master-port",
                                                      std::to_string(freePort())},
                                                     exact)),
                     dir, "two"),
              0)
        << test::readText(dir.file("two.err"));
    EXPECT_NE(test::readText(dir.file("two.err")).find("rank 1 of 2 started"), std::string::npos);

    auto one = loadCheckpoint(dir.file("one") + "/last.pth.tar");
    auto two = loadCheckpoint(dir.file("two") + "/last.pth.tar");
    auto params = two.model->named_parameters();
    double worst = 0;
    int moved = 0;
    for (const auto& p : one.model->named_parameters()) {
        const auto& q = *params.find(p.key());
        worst = std::max(worst, (p.value() - q).abs().max().item<double>());
        moved += !at::equal(p.value(), q);
    }
    EXPECT_LT(worst, 2e-5) << "parameters of 2 x 8 and 1 x 16 differ";
    EXPECT_GT(moved, 0); // reduction order makes them differ a little, which shows two processes ran
    // Both saw the same loss at every step and the same validation (sharded on two ranks).
    std::ifstream a(dir.file("one") + "/metrics.jsonl"), b(dir.file("two") + "/metrics.jsonl");
    std::string la, lb;
    int lines = 0;
    while (std::getline(a, la) && std::getline(b, lb)) {
        auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
        EXPECT_EQ(ja["step"], jb["step"]);
        EXPECT_NEAR(ja["loss"].get<double>(), jb["loss"].get<double>(), 1e-4);
        if (ja["phase"] == "val")
            EXPECT_NEAR(ja["top1"].get<double>(), jb["top1"].get<double>(), 1e-9);
        ++lines;
    }
    EXPECT_EQ(lines, 5);
    EXPECT_EQ(nlohmann::json::parse(test::readText(dir.file("two") + "/run.json"))["world_size"], 2);
}

TEST(TrainCliDistributed, KillingOneRankMakesTheOtherFailWithAClearMessage)
{
    FEC_REQUIRE_FASHION_MNIST();
    if (!glooAvailable())
        GTEST_SKIP() << "built without Gloo headers (libgloo-dev)";
    TempDir dir;
    const auto port = std::to_string(freePort());
    const auto args = tinyRun(dir.file("run"), {"--batch", "4", "--epochs", "1000", "--dist-timeout", "20"});
    std::vector<Child> ranks;
    for (int r = 0; r < 2; ++r)
        ranks.push_back(spawn(args, dir.file("r" + std::to_string(r) + ".out"),
                              dir.file("r" + std::to_string(r) + ".err"),
                              {"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port, "WORLD_SIZE=2",
                               "RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r)}));
    ASSERT_TRUE(waitForStep(dir.file("run"), 2, 90)) << test::readText(dir.file("r0.err"));
    const auto killed = std::chrono::steady_clock::now();
    kill(ranks[1].pid, SIGKILL);
    waitFor(ranks[1], 10);
    const int status = waitFor(ranks[0], 40);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    ASSERT_GE(status, 0) << "rank 0 hung after rank 1 died";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    EXPECT_LT(seconds, 30.0);
    const auto err = test::readText(dir.file("r0.err"));
    EXPECT_NE(err.find("rank 1 stopped responding"), std::string::npos) << err;
}

TEST(TrainCliDistributed, LauncherStopsTheOtherRanksAndFailsWhenARankDies)
{
    FEC_REQUIRE_FASHION_MNIST();
    if (!glooAvailable())
        GTEST_SKIP() << "built without Gloo headers (libgloo-dev)";
    TempDir dir;
    auto launcher =
        spawn(tinyRun(dir.file("run"), {"--batch", "4", "--epochs", "1000", "--dist-timeout", "20", "--nproc-per-node",
                                        "2", "--master-port", std::to_string(freePort())}),
              dir.file("l.out"), dir.file("l.err"));
    ASSERT_TRUE(waitForStep(dir.file("run"), 2, 90)) << test::readText(dir.file("l.err"));
    std::smatch m;
    const auto log = test::readText(dir.file("l.err"));
    ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(rank 1 of 2 started \(pid ([0-9]+)\))"))) << log;
    const pid_t rank1 = std::stoi(m[1]);
    ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(rank 0 of 2 started \(pid ([0-9]+)\))"))) << log;
    const pid_t rank0 = std::stoi(m[1]);
    kill(rank1, SIGKILL);
    const int status = waitFor(launcher, 45);
    ASSERT_GE(status, 0) << "the launcher hung after a rank died";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    const auto err = test::readText(dir.file("l.err"));
    EXPECT_NE(err.find("rank 1 (pid " + std::to_string(rank1) + ") failed: killed by signal 9"), std::string::npos)
        << err;
    EXPECT_NE(kill(rank0, 0), 0) << "rank 0 is still running";
}

} // namespace
} // namespace fec::train
