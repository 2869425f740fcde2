// `fec train` and `fec eval` as users and the GUI run them: evaluation output and CSV, stopping
// with a signal and resuming, and c10d data parallelism on loopback (equivalence with one
// process, and a clear failure when a rank dies).

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
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
#include "fec/train/run_lock.h"
#include "fec/train/train_options.h"
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

// Every line of RUN_DIR/metrics.jsonl is a JSON object; returns how many there are (-1: a torn one).
int parsedMetricLines(const std::string& runDir)
{
    std::ifstream in(runDir + "/metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("step"))
            return -1;
    }
    return lines;
}

// A pid no process has: a child that has exited and been reaped.
pid_t deadPid()
{
    const pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, nullptr, 0);
    return pid;
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
    // The structured record says the same as the note (what the explorer reads).
    auto record = nlohmann::json::parse(test::readText(run + "/run.json"))["final"];
    EXPECT_EQ(record["status"], "stopped") << record.dump();
    EXPECT_EQ(record["steps"], stoppedAt);
    EXPECT_EQ(record["total_steps"], 256);

    // --resume needs no other flag: data and settings come from run.json.
    ASSERT_EQ(runFec({"--threads", "1", "train", "--resume", "--out", run}, dir, "b"), 0)
        << test::readText(dir.file("b.err"));
    EXPECT_NE(test::readText(dir.file("b.err")).find("resuming from"), std::string::npos);
    EXPECT_EQ(loggedStep(run), 256);  // 2048 images / 8 per step
    record = nlohmann::json::parse(test::readText(run + "/run.json"))["final"];
    EXPECT_EQ(record["status"], "done") << record.dump();
    EXPECT_EQ(record["steps"], 256);
    EXPECT_EQ(record["epochs"], 1);
    EXPECT_EQ(record["best_metric"]["name"], "top1");
}

// Every option of the table is a flag `fec train` accepts and records in run.json exactly; the
// flags outside the table are the data, the architecture and how the process runs.
TEST(TrainCli, EveryOptionFlagIsAcceptedAndRecorded)
{
    TempDir dir;
    ASSERT_EQ(runFec({"train", "--help"}, dir, "help"), 0);
    const auto help = test::readText(dir.file("help.out"));
    std::set<std::string> flags;
    const std::regex flag("(^|[ ,])(--[a-z0-9-]+)");
    for (auto it = std::sregex_iterator(help.begin(), help.end(), flag); it != std::sregex_iterator(); ++it)
        flags.insert((*it)[2]);
    const std::set<std::string> outsideTheTable{"--help",        "--data",         "--out",
                                                "--val",         "--val-split",    "--train-limit",
                                                "--val-limit",  // run.json "command"
                                                "--arch",        "--config",       "--layers",
                                                "--dims",        "--heads",        "--head-dims",
                                                "--mlp-ratios",  "--proposals",  // "config"
                                                "--no-augment",  // a preset of the table's augment and mix rows
                                                "--json",        "--dry-run",      "--nproc-per-node",
                                                "--nnodes",      "--node-rank",    "--master-addr",
                                                "--master-port", "--dist-timeout", "--bench",
                                                "--bench-steps", "--bench-warmup"};
    for (const auto& row : trainOptionTable())
        if (!row.flag.empty())
            EXPECT_TRUE(flags.count(row.flag)) << row.flag << " missing from fec train --help";
    for (const auto& f : flags)
        EXPECT_TRUE(findTrainOption(f) || outsideTheTable.count(f)) << f << ": a flag neither in the table nor known";

    // Every flag at a value other than its default, as the explorer would pass them.
    TrainOptions changed;
    changed.checkpoint = dir.file("base.pth.tar");
    changed.weights = WeightsChoice::Ema;
    changed.freezeStages = {0, 1};
    changed.dropPath = 0.2;
    changed.size = 64;
    changed.batch = 8;
    changed.accum = 2;
    changed.workers = 1;
    changed.augment.scaleMin = 0.25;
    changed.augment.hflip = 0.25;
    changed.augment.eraseProb = 0.125;
    changed.mix.mixupAlpha = 0.8;
    changed.mix.cutmixAlpha = 1.0;
    changed.mix.smoothing = 0.05;
    changed.evalResize = "crop";
    changed.epochs = 3;
    changed.maxSteps = 17;
    changed.lr = 2.5e-4;
    changed.minLr = 3e-6;
    changed.warmupLr = 2e-7;
    changed.warmupEpochs = 0.5;
    changed.weightDecay = 0.01;
    changed.clipGrad = 1.5;
    changed.emaDecay = 0.9998;
    changed.seed = 123456789012345ull;
    changed.logEvery = 3;
    changed.tensorboard = false;
    changed.device = "auto";
    auto args =
        concat({"train", "--data", dir.path(), "--out", dir.file("run"), "--dry-run"}, optionArguments(changed));
    for (const auto& row : trainOptionTable())
        if (!row.flag.empty() && row.flag != "--resume")
            EXPECT_NE(std::find(args.begin(), args.end(), row.flag), args.end()) << row.flag << " not exercised";
    ASSERT_EQ(runFec(args, dir, "dry"), 0) << test::readText(dir.file("dry.err"));
    const auto printed = nlohmann::json::parse(test::readText(dir.file("dry.out")));
    const auto expected = nlohmann::json::parse(optionsToJson(changed));
    for (const auto& row : trainOptionTable())
        if (!row.key.empty())
            EXPECT_EQ(printed["options"][nlohmann::json::json_pointer(row.key)],
                      expected[nlohmann::json::json_pointer(row.key)])
                << row.key;
    EXPECT_FALSE(fs::exists(dir.file("run"))) << "a dry run writes nothing";

    // A bad value is refused by the flag's own check.
    ASSERT_NE(
        runFec({"train", "--data", dir.path(), "--out", dir.file("run"), "--dry-run", "--epochs", "0"}, dir, "bad"), 0);
    EXPECT_NE(test::readText(dir.file("bad.err")).find("--epochs"), std::string::npos)
        << test::readText(dir.file("bad.err"));
}

// Two trainers on one run folder: the second (new run or --resume) is refused before it touches
// anything, naming the folder and the owner; the first run's files stay its own.
TEST(TrainCli, SecondTrainerOnABusyRunFolderIsRefusedAndTheFirstRunIsIntact)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    const auto run = dir.file("run");
    auto first = spawn(tinyRun(run, {"--batch", "8", "--epochs", "1"}, 2048), dir.file("a.out"), dir.file("a.err"));
    ASSERT_TRUE(waitForStep(run, 3, 60)) << test::readText(dir.file("a.err"));
    EXPECT_EQ(std::stol(test::readText(runLockPath(run))), static_cast<long>(first.pid));
    EXPECT_EQ(runFolderOwner(run), static_cast<long>(first.pid));
    const auto runJson = test::readText(run + "/run.json");

    for (const auto& [name, args] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"new", tinyRun(run, {"--batch", "16", "--epochs", "1"}, 512)},
             {"resume", {"--threads", "1", "train", "--resume", "--out", run}}}) {
        const int code = runFec(args, dir, name, 60);
        EXPECT_NE(code, 0) << name;
        EXPECT_GT(code, 0) << name << ": did not exit in time";
        const auto err = test::readText(dir.file(name + ".err"));
        EXPECT_NE(err.find("the run folder " + run + " is in use by another training process (pid " +
                           std::to_string(first.pid) + ")"),
                  std::string::npos)
            << name << ": " << err;
        EXPECT_EQ(test::readText(run + "/run.json"), runJson) << name;
        EXPECT_GT(parsedMetricLines(run), 0) << name;
    }
    EXPECT_EQ(waitpid(first.pid, nullptr, WNOHANG), 0) << "the first run died";

    kill(first.pid, SIGINT);
    const int status = waitFor(first, 60);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << test::readText(dir.file("a.err"));
    EXPECT_EQ(WEXITSTATUS(status), 0) << test::readText(dir.file("a.err"));
    const auto stoppedAt = loggedStep(run);
    EXPECT_GE(parsedMetricLines(run), stoppedAt);  // one line per step, none torn, none foreign
    auto record = nlohmann::json::parse(test::readText(run + "/run.json"));
    EXPECT_EQ(record["train_size"], 2048);  // the first run's description, not the refused one's
    EXPECT_EQ(record["final"]["status"], "stopped") << record.dump();
    EXPECT_EQ(record["final"]["steps"], stoppedAt);
    EXPECT_EQ(runFolderOwner(run), 0);  // released with the process
}

// flock locks die with their process: a lock file naming a killed process is taken over.
TEST(TrainCli, LockFileLeftByAKilledProcessDoesNotBlockANewRun)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    const auto run = dir.file("run");
    fs::create_directories(run);
    const pid_t dead = deadPid();
    std::ofstream(runLockPath(run)) << dead << "\n";
    EXPECT_EQ(runFolderOwner(run), 0);
    auto c = spawn(tinyRun(run, {"--batch", "16", "--max-steps", "2"}), dir.file("t.out"), dir.file("t.err"));
    const int status = waitFor(c, 120);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << test::readText(dir.file("t.err"));
    EXPECT_EQ(WEXITSTATUS(status), 0) << test::readText(dir.file("t.err"));
    EXPECT_EQ(loggedStep(run), 2);
    EXPECT_EQ(std::stol(test::readText(runLockPath(run))), static_cast<long>(c.pid));  // the pid was rewritten
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
    EXPECT_GT(moved, 0);  // reduction order makes them differ a little, which shows two processes ran
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

// With --nproc-per-node the launcher owns the folder for its ranks (rank 0 writes it under the
// launcher's lock); another start on it is refused naming the launcher.
TEST(TrainCliDistributed, LauncherOwnsTheRunFolderAndRefusesASecondStart)
{
    FEC_REQUIRE_FASHION_MNIST();
    if (!glooAvailable())
        GTEST_SKIP() << "built without Gloo headers (libgloo-dev)";
    TempDir dir;
    const auto run = dir.file("run");
    auto launcher = spawn(tinyRun(run, {"--batch", "4", "--epochs", "1000", "--nproc-per-node", "2", "--master-port",
                                        std::to_string(freePort())}),
                          dir.file("l.out"), dir.file("l.err"));
    ASSERT_TRUE(waitForStep(run, 2, 90)) << test::readText(dir.file("l.err"));
    EXPECT_EQ(runFolderOwner(run), static_cast<long>(launcher.pid));
    const auto runJson = test::readText(run + "/run.json");
    EXPECT_NE(runFec(tinyRun(run, {"--batch", "16", "--max-steps", "2"}), dir, "second", 60), 0);
    const auto err = test::readText(dir.file("second.err"));
    EXPECT_NE(err.find("the run folder " + run + " is in use by another training process (pid " +
                       std::to_string(launcher.pid) + ")"),
              std::string::npos)
        << err;
    EXPECT_EQ(test::readText(run + "/run.json"), runJson);
    kill(launcher.pid, SIGINT);
    const int status = waitFor(launcher, 60);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << test::readText(dir.file("l.err"));
    EXPECT_EQ(WEXITSTATUS(status), 0) << test::readText(dir.file("l.err"));
    EXPECT_GT(parsedMetricLines(run), 0);
    EXPECT_EQ(runFolderOwner(run), 0);
}

}  // namespace
}  // namespace fec::train
