// The trainer: trainable model paths, learning on Fashion-MNIST, exact resume, checkpoints that
// the rest of the program (and PyTorch) read, fine-tuning, metrics, and crash-safe saving.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <random>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "fec/checkpoint.h"
#include "fec/pickle.h"
#include "fec/runtime.h"
#include "fec/train/dataset.h"
#include "fec/train/run_lock.h"
#include "fec/train/tfevents.h"
#include "fec/train/trainer.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace fec::train {
namespace {

using test::TempDir;

class Environment : public ::testing::Environment {
public:
    void SetUp() override
    {
        installCachingCpuAllocator();
        at::set_num_threads(1);  // exact reproducibility and a fair share of a small machine
    }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new Environment);

// Random images of `classes` classes whose mean brightness tells the class (learnable).
class SyntheticDataset : public Dataset {
public:
    SyntheticDataset(int64_t n, int classes) : m_n(n), m_classes(classes) {}
    int64_t size() const override { return m_n; }
    Sample get(int64_t i) const override
    {
        auto g = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(i) + 1);
        auto noise = at::empty({24, 24, 3}).uniform_(0, 60, g);
        return {(noise + 60.0 * static_cast<double>(label(i))).clamp(0, 255).to(at::kByte), label(i)};
    }
    int64_t label(int64_t i) const override { return i % m_classes; }
    std::vector<std::string> classNames() const override
    {
        std::vector<std::string> n;
        for (int c = 0; c < m_classes; ++c)
            n.push_back("c" + std::to_string(c));
        return n;
    }
    std::string description() const override { return "synthetic"; }
    std::string preprocess() const override { return "squash"; }

private:
    int64_t m_n;
    int m_classes;
};

std::shared_ptr<FashionMnist> fashion(FashionMnist::Split split, int64_t n)
{
    return std::make_shared<FashionMnist>(test::fashionMnistDir(), split, n);
}

void expectSameParameters(FecModelImpl& a, FecModelImpl& b, const std::string& what)
{
    auto pb = b.named_parameters();
    for (const auto& p : a.named_parameters()) {
        const auto* q = pb.find(p.key());
        ASSERT_TRUE(q) << p.key();
        EXPECT_TRUE(at::equal(p.value(), *q))
            << what << ": " << p.key() << " differs by " << (p.value() - *q).abs().max().item<double>();
    }
}

std::vector<nlohmann::json> metricLines(const std::string& runDir)
{
    std::vector<nlohmann::json> out;
    std::ifstream in(runDir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);)
        out.push_back(nlohmann::json::parse(line));
    return out;
}

TEST(TrainableModel, TrainingForwardMatchesInferenceForward)
{
    for (bool folded : {false, true}) {
        auto config = test::tinyConfig();
        if (folded) {
            config.foldW = {2, 2, 1, 1};
            config.foldH = {2, 2, 1, 1};
        }
        at::manual_seed(3);
        FecModel model(config);
        {
            // Trained-looking scales so that every branch matters.
            at::NoGradGuard noGrad;
            for (auto& p : model->named_parameters())
                if (p.key().find("layer_scale") != std::string::npos)
                    p.value().fill_(0.5);
        }
        auto x = at::randn({3, 3, 64, 64});
        model->eval();
        at::Tensor reference;
        {
            at::NoGradGuard noGrad;
            reference = model->forward(x);
        }
        model->train();
        auto trained = model->forward(x);
        EXPECT_TRUE(trained.requires_grad());
        EXPECT_LT((trained.detach() - reference).abs().max().item<double>(), 1e-4) << (folded ? "folded" : "plain");
    }
}

TEST(TrainableModel, GradientsReachEveryParameterExceptThePoolsConvF)
{
    at::manual_seed(0);
    FecModel model(test::tinyConfig());
    model->train();
    auto loss = model->forward(at::randn({2, 3, 32, 32})).logsumexp(1).mean();
    loss.backward();
    for (const auto& p : model->named_parameters()) {
        const bool poolKey = p.key().find(".conv_f.") != std::string::npos;
        EXPECT_EQ(p.value().grad().defined(), !poolKey) << p.key();
        if (!poolKey)
            EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    }
}

TEST(TrainableModel, DropPathOnlyInTrainingModeAndLinearAcrossBlocks)
{
    at::manual_seed(0);
    auto config = test::tinyConfig();
    config.layers = {2, 2, 2, 2};
    FecModel model(config);
    model->setDropPath(0.5);
    EXPECT_DOUBLE_EQ(model->dropPath(), 0.5);
    auto x = at::randn({4, 3, 32, 32});
    at::NoGradGuard noGrad;
    model->eval();
    auto a = model->forward(x), b = model->forward(x);
    EXPECT_TRUE(at::equal(a, b));
    model->train();
    at::manual_seed(1);
    auto c = model->forward(x);
    at::manual_seed(2);
    auto d = model->forward(x);
    EXPECT_FALSE(at::allclose(c, d));
    at::manual_seed(1);
    EXPECT_TRUE(at::equal(c, model->forward(x)));
    EXPECT_THROW(model->setDropPath(1.0), c10::Error);
}

TEST(Trainer, LossDecreasesOnAFashionMnistSubset)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    o.batch = 32;
    o.epochs = 2;
    o.maxSteps = 40;
    o.lr = 3e-3;
    o.warmupEpochs = 0.2;
    o.augment.randomCrop = false;
    o.augment.hflip = 0.5;
    std::vector<double> losses;
    Trainer trainer(o, fashion(FashionMnist::Split::Train, 1024), fashion(FashionMnist::Split::Test, 300));
    auto result = trainer.run(nullptr, [&](const TrainEvent& e) {
        if (e.phase == "train")
            losses.push_back(e.loss);
    });
    EXPECT_TRUE(result.completed);
    ASSERT_EQ(losses.size(), 40u);
    const double first = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
    const double last = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
    EXPECT_LT(last, first - 0.5) << "first steps " << first << ", last steps " << last;
    EXPECT_GT(result.bestTop1, 40.0);  // chance is 10%
}

// Everything random is on: crop, flip, erasing, MixUp/CutMix, drop path, EMA, accumulation.
TrainOptions resumeOptions(const std::string& dir)
{
    auto o = test::tinyOptions(dir);
    o.batch = 8;
    o.accum = 2;
    o.epochs = 2;
    o.maxSteps = 10;  // 6 steps per epoch: the run crosses an epoch boundary
    o.augment.eraseProb = 0.5;
    o.mix.mixupAlpha = 0.4;
    o.mix.cutmixAlpha = 1.0;
    o.emaDecay = 0.9;
    o.dropPath = 0.2;
    o.clipGrad = 1.0;
    o.seed = 11;
    return o;
}

TEST(Trainer, ResumeAfterStopReproducesTheUninterruptedRun)
{
    auto data = std::make_shared<SyntheticDataset>(100, 4);
    auto val = std::make_shared<SyntheticDataset>(24, 4);
    TempDir whole, parts, boundary;
    Trainer uninterrupted(resumeOptions(whole.path()), data, val);
    ASSERT_EQ(uninterrupted.stepsPerEpoch(), 6);
    ASSERT_TRUE(uninterrupted.run().completed);

    for (int stopAt : {4, 6}) {
        const auto& dir = stopAt == 4 ? parts : boundary;
        std::atomic<bool> cancel{false};
        {
            Trainer first(resumeOptions(dir.path()), data, val);
            auto r = first.run(&cancel, [&](const TrainEvent& e) {
                if (e.phase == "train" && e.step == stopAt)
                    cancel = true;
            });
            EXPECT_FALSE(r.completed);
            EXPECT_EQ(r.steps, stopAt);
        }
        auto o = resumeOptions(dir.path());
        o.resume = true;
        o.workers = 1;  // the data pipeline's results do not depend on its thread count
        Trainer second(o, data, val);
        auto r = second.run();
        EXPECT_TRUE(r.completed);
        EXPECT_EQ(r.steps, 10);

        auto a = loadCheckpoint(whole.file("last.pth.tar"), {WeightsChoice::StateDict, {}});
        auto b = loadCheckpoint(dir.file("last.pth.tar"), {WeightsChoice::StateDict, {}});
        expectSameParameters(*a.model, *b.model, "stopped at step " + std::to_string(stopAt));
        auto ae = loadCheckpoint(whole.file("last.pth.tar"), {WeightsChoice::Ema, {}});
        auto be = loadCheckpoint(dir.file("last.pth.tar"), {WeightsChoice::Ema, {}});
        expectSameParameters(*ae.model, *be.model, "EMA, stopped at step " + std::to_string(stopAt));

        // The resumed run's metrics continue the stopped one's: steps 1..10 once each.
        std::vector<int64_t> steps;
        for (const auto& line : metricLines(dir.path()))
            if (line["phase"] == "train")
                steps.push_back(line["step"].get<int64_t>());
        std::vector<int64_t> expected(10);
        std::iota(expected.begin(), expected.end(), 1);
        EXPECT_EQ(steps, expected);
        std::vector<double> lossesWhole, lossesParts;
        for (const auto& line : metricLines(whole.path()))
            lossesWhole.push_back(line["loss"].get<double>());
        for (const auto& line : metricLines(dir.path()))
            lossesParts.push_back(line["loss"].get<double>());
        EXPECT_EQ(lossesWhole, lossesParts);
    }
}

TEST(Trainer, CheckpointHoldsEverythingAndLoadsEverywhere)
{
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    o.emaDecay = 0.5;
    o.maxSteps = 3;
    auto data = std::make_shared<SyntheticDataset>(64, 3);
    Trainer trainer(o, data, std::make_shared<SyntheticDataset>(12, 3));
    auto result = trainer.run();
    ASSERT_TRUE(result.completed);
    ASSERT_TRUE(fs::exists(dir.file("best.pth.tar")));

    auto loaded = loadCheckpoint(dir.file("last.pth.tar"));
    const auto& info = loaded.info;
    EXPECT_TRUE(info.configStored);
    EXPECT_EQ(info.layout, CheckpointLayout::TimmTraining);
    EXPECT_EQ(info.weights, WeightsEntry::StateDictEma);  // the EMA weights are what evaluation uses by default
    EXPECT_EQ(info.classNames, (std::vector<std::string>{"c0", "c1", "c2"}));
    EXPECT_EQ(info.inputSize, 32);
    EXPECT_EQ(info.preprocess, "squash");
    auto expected = test::tinyConfig();
    expected.numClasses = 3;
    EXPECT_EQ(info.inferred.config, expected);

    auto plain = loadCheckpoint(dir.file("last.pth.tar"), {WeightsChoice::StateDict, {}});
    expectSameParameters(*plain.model, *trainer.model(), "state_dict");

    auto archive = pickle::readTorchFile(dir.file("last.pth.tar"));
    const auto& root = archive.root;
    for (const char* key : {"epoch", "arch", "state_dict", "state_dict_ema", "version", "fec_config", "class_names",
                            "input_size", "preprocess", "optimizer", "scheduler", "train_state", "rng", "args"})
        EXPECT_TRUE(root->get(key)) << key;
    auto state = root->get("optimizer")->get("state");
    ASSERT_TRUE(state);
    auto fc1 = state->get("network.0.0.mlp.fc1.weight");
    ASSERT_TRUE(fc1);
    EXPECT_TRUE(fc1->get("exp_avg") && fc1->get("exp_avg_sq") && fc1->get("step"));
    EXPECT_FALSE(state->get("network.1.conv_f.weight")) << "conv_f never gets a gradient, so it has no state";
    EXPECT_EQ(root->get("train_state")->get("global_step")->i, 3);
    EXPECT_EQ(root->get("scheduler")->get("total_steps")->i, 3);
    EXPECT_EQ(root->get("rng")->get("seed")->i, 0);

    // metrics.jsonl and the TensorBoard file agree on what was logged.
    auto lines = metricLines(dir.path());
    ASSERT_EQ(lines.size(), 4u);  // 3 train steps + 1 validation
    for (const auto& key : {"phase", "epoch", "step", "loss", "lr", "images_per_s", "time"})
        EXPECT_TRUE(lines[0].contains(key)) << key;
    EXPECT_EQ(lines[3]["phase"], "val");
    EXPECT_TRUE(lines[3].contains("top1") && lines[3].contains("top5") && lines[3].contains("ema_top1"));
    std::string eventsPath;
    for (const auto& entry : fs::directory_iterator(dir.path()))
        if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
            eventsPath = entry.path().string();
    ASSERT_FALSE(eventsPath.empty());
    auto events = readEventFile(eventsPath);
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[0].fileVersion, "brain.Event:2");
    EXPECT_EQ(events[3].step, 3);
    EXPECT_EQ(events[3].scalars[0].first, "train/loss");
    EXPECT_FLOAT_EQ(events[3].scalars[0].second, static_cast<float>(lines[2]["loss"].get<double>()));
    EXPECT_EQ(events[4].scalars[0].first, "val/loss");
    const auto& valScalars = events[4].scalars;
    EXPECT_TRUE(std::any_of(valScalars.begin(), valScalars.end(), [](const auto& s) { return s.first == "val/top1"; }));

    auto run = nlohmann::json::parse(test::readText(dir.file("run.json")));
    EXPECT_EQ(run["total_steps"], 3);
    EXPECT_EQ(run["options"]["ema_decay"], 0.5);
    EXPECT_EQ(run["class_names"].size(), 3u);
}

TEST(Trainer, FineTuningGetsANewHeadAndKeepsFrozenStages)
{
    TempDir dir;
    at::manual_seed(5);
    FecModel base(test::tinyConfig());
    SaveOptions save;
    save.inputSize = 32;
    saveCheckpoint(dir.file("base.pth.tar"), *base, save);

    auto o = test::tinyOptions(dir.file("run"));
    o.checkpoint = dir.file("base.pth.tar");
    o.freezeStages = {0, 1};
    o.maxSteps = 3;
    std::vector<std::string> notes;
    Trainer trainer(o, std::make_shared<SyntheticDataset>(64, 3), nullptr, nullptr,
                    [&](const std::string& line) { notes.push_back(line); });
    ASSERT_TRUE(trainer.run().completed);
    auto tuned = trainer.model();
    EXPECT_EQ(tuned->config().numClasses, 3);
    ASSERT_FALSE(notes.empty());
    EXPECT_NE(notes.front().find("head.weight"), std::string::npos) << notes.front();
    auto before = base->named_parameters();
    for (const auto& p : tuned->named_parameters()) {
        const auto& key = p.key();
        if (key.rfind("head.", 0) == 0)
            continue;
        const bool frozen = key.rfind("patch_embed.", 0) == 0 || key.rfind("network.0.", 0) == 0 ||
                            key.rfind("network.1.", 0) == 0 || key.rfind("network.2.", 0) == 0;
        const bool neverTrained = key.find(".conv_f.") != std::string::npos && key.rfind("network.", 0) == 0 &&
                                  (key[8] == '1' || key[8] == '3' || key[8] == '5');
        const bool same = at::equal(p.value(), *before.find(key));
        EXPECT_EQ(same, frozen || neverTrained) << key;
    }
    EXPECT_THROW(freezeStages(*tuned, {4}), std::invalid_argument);
}

TEST(Trainer, CancelledBeforeStartingStopsAfterOneStepWithACheckpoint)
{
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    std::atomic<bool> cancel{true};
    Trainer trainer(o, std::make_shared<SyntheticDataset>(64, 2), nullptr);
    auto r = trainer.run(&cancel);
    EXPECT_FALSE(r.completed);
    EXPECT_EQ(r.steps, 1);
    auto archive = pickle::readTorchFile(dir.file("last.pth.tar"));
    EXPECT_EQ(archive.root->get("train_state")->get("step_in_epoch")->i, 1);
}

nlohmann::json finalRecord(const TempDir& dir)
{
    auto run = nlohmann::json::parse(test::readText(dir.file("run.json")));
    return run.value("final", nlohmann::json());
}

// A dataset whose image `bad` cannot be read (a truncated file, say).
class BrokenDataset : public SyntheticDataset {
public:
    BrokenDataset(int64_t n, int classes, int64_t bad) : SyntheticDataset(n, classes), m_bad(bad) {}
    Sample get(int64_t i) const override
    {
        if (i == m_bad)
            throw DataError("image " + std::to_string(i) + ": truncated file");
        return SyntheticDataset::get(i);
    }

private:
    int64_t m_bad;
};

TEST(TrainerFinalRecord, DoneRunRecordsStepsBestMetricAndCheckpoints)
{
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    o.maxSteps = 3;
    const double before = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    Trainer trainer(o, std::make_shared<SyntheticDataset>(64, 3), std::make_shared<SyntheticDataset>(12, 3));
    auto result = trainer.run();
    ASSERT_TRUE(result.completed);

    auto run = nlohmann::json::parse(test::readText(dir.file("run.json")));
    // The record is added; everything run.json had stays.
    for (const char* key : {"format", "options", "train_data", "class_names", "total_steps", "epochs", "started"})
        EXPECT_TRUE(run.contains(key)) << key;
    ASSERT_TRUE(run.contains("final")) << run.dump(2);
    const auto& f = run["final"];
    EXPECT_EQ(f["status"], "done");
    EXPECT_EQ(f["steps"], 3);
    EXPECT_EQ(f["total_steps"], 3);
    EXPECT_EQ(f["epochs"], 0) << "epochs completed: --max-steps ended the run within the first (4 steps)";
    ASSERT_TRUE(f["best_metric"].is_object()) << f.dump();
    EXPECT_EQ(f["best_metric"]["name"], "top1");
    EXPECT_DOUBLE_EQ(f["best_metric"]["value"].get<double>(), result.bestTop1);
    EXPECT_EQ(f["best_metric"]["epoch"], 0);
    EXPECT_NE(f["exit_reason"].get<std::string>().find("last step (3 of 3)"), std::string::npos) << f.dump();
    EXPECT_GE(f["finished_at"].get<double>(), before);
    EXPECT_EQ(f["last_checkpoint"], dir.file("last.pth.tar"));
    EXPECT_EQ(f["best_checkpoint"], dir.file("best.pth.tar"));

    // With EMA the best metric is the EMA's; without validation there is none.
    TempDir ema, blind;
    o = test::tinyOptions(ema.path());
    o.maxSteps = 2;
    o.emaDecay = 0.5;
    Trainer(o, std::make_shared<SyntheticDataset>(64, 3), std::make_shared<SyntheticDataset>(12, 3)).run();
    EXPECT_EQ(finalRecord(ema)["best_metric"]["name"], "ema_top1");
    o = test::tinyOptions(blind.path());
    o.maxSteps = 2;
    Trainer(o, std::make_shared<SyntheticDataset>(64, 3), nullptr).run();
    EXPECT_EQ(finalRecord(blind)["status"], "done");
    EXPECT_TRUE(finalRecord(blind)["best_metric"].is_null());
    EXPECT_TRUE(finalRecord(blind)["best_checkpoint"].is_null());
}

TEST(TrainerFinalRecord, StoppedRunSaysSoAndResumeReplacesIt)
{
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    o.epochs = 2;
    o.maxSteps = 6;  // 4 steps per epoch
    auto data = std::make_shared<SyntheticDataset>(64, 2);
    std::atomic<bool> cancel{false};
    {
        Trainer trainer(o, data, nullptr);
        trainer.run(&cancel, [&](const TrainEvent& e) {
            if (e.step == 2)
                cancel = true;
        });
    }
    auto f = finalRecord(dir);
    EXPECT_EQ(f["status"], "stopped");
    EXPECT_EQ(f["steps"], 2);
    EXPECT_EQ(f["total_steps"], 6);
    EXPECT_EQ(f["epochs"], 0);
    EXPECT_NE(f["exit_reason"].get<std::string>().find("stop requested at step 2 of 6"), std::string::npos) << f.dump();
    EXPECT_EQ(f["last_checkpoint"], dir.file("last.pth.tar"));

    o.resume = true;
    Trainer resumed(o, data, nullptr);
    bool recordWhileRunning = true;
    resumed.run(nullptr, [&](const TrainEvent&) { recordWhileRunning = !finalRecord(dir).is_null(); });
    EXPECT_FALSE(recordWhileRunning) << "a resumed run is not final until it ends";
    f = finalRecord(dir);
    EXPECT_EQ(f["status"], "done");
    EXPECT_EQ(f["steps"], 6);
    EXPECT_EQ(f["epochs"], 1);
}

TEST(TrainerFinalRecord, FailureIsRecordedAndRethrown)
{
    TempDir dir;
    auto o = test::tinyOptions(dir.path());
    o.workers = 0;
    Trainer trainer(o, std::make_shared<BrokenDataset>(64, 2, 40), nullptr);
    EXPECT_THROW(trainer.run(), DataError);
    const auto f = finalRecord(dir);
    EXPECT_EQ(f["status"], "failed");
    EXPECT_NE(f["exit_reason"].get<std::string>().find("truncated file"), std::string::npos) << f.dump();
    EXPECT_LT(f["steps"].get<int64_t>(), 4) << "the broken image is in the only epoch's 4 steps";
    EXPECT_TRUE(f["last_checkpoint"].is_null());
}

// A run folder belongs to one trainer at a time; the trainer's end releases it.
TEST(Trainer, RunFolderIsOwnedByOneTrainerAtATime)
{
    TempDir dir;
    auto data = std::make_shared<SyntheticDataset>(64, 2);
    auto o = test::tinyOptions(dir.path());
    o.maxSteps = 1;
    {
        Trainer first(o, data, nullptr);
        EXPECT_EQ(runFolderOwner(dir.path()), static_cast<long>(::getpid()));
        const auto runJson = test::readText(dir.file("run.json"));
        try {
            Trainer second(o, data, nullptr);
            FAIL() << "a second trainer took a folder in use";
        } catch (const RunFolderBusy& e) {
            EXPECT_EQ(e.runDir(), dir.path());
            EXPECT_EQ(e.ownerPid(), static_cast<long>(::getpid()));
            EXPECT_NE(std::string(e.what()).find(dir.path()), std::string::npos) << e.what();
        }
        EXPECT_EQ(test::readText(dir.file("run.json")), runJson);
        EXPECT_TRUE(first.run().completed);
    }
    EXPECT_EQ(runFolderOwner(dir.path()), 0);
    Trainer again(o, data, nullptr);
    EXPECT_TRUE(again.run().completed);
}

TEST(Trainer, BadOptionsAreRejectedWithReasons)
{
    TempDir dir;
    auto data = std::make_shared<SyntheticDataset>(10, 2);
    auto o = test::tinyOptions(dir.path());
    o.batch = 64;
    try {
        Trainer t(o, data, nullptr);
        FAIL() << "a training set smaller than one step was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("smaller than one optimizer step"), std::string::npos) << e.what();
    }
    o = test::tinyOptions(dir.path());
    o.size = 48;
    EXPECT_THROW(Trainer(o, data, nullptr), std::invalid_argument);
    o = test::tinyOptions(dir.path());
    o.resume = true;
    EXPECT_THROW(Trainer(o, data, nullptr), std::invalid_argument);  // nothing to resume
}

// A process killed while writing a checkpoint leaves the previous one loadable.
TEST(CheckpointSafety, KillDuringSaveLeavesALoadableCheckpoint)
{
    TempDir dir;
    const auto path = dir.file("last.pth.tar");
    auto config = test::tinyConfig();
    config.dims = {32, 64, 128, 256};  // a few MB, so a save takes long enough to be interrupted
    std::mt19937 random(12345);
    for (int round = 0; round < 4; ++round) {
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            FecModel model(config);
            for (int i = 0;; ++i) {
                {
                    at::NoGradGuard noGrad;
                    for (auto& p : model->parameters())
                        p.fill_(static_cast<double>(i));
                }
                SaveOptions save;
                save.epoch = i;
                saveCheckpoint(path, *model, save);
            }
        }
        // Let it complete at least one save, then kill it at a random moment.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 150)(random)));
        kill(child, SIGKILL);
        int status = 0;
        waitpid(child, &status, 0);
        ASSERT_TRUE(WIFSIGNALED(status));
        auto loaded = loadCheckpoint(path, {WeightsChoice::StateDict, {}});
        // Every tensor holds the same value: one whole checkpoint, not a mix of two.
        const auto value = loaded.model->parameters().front().flatten()[0].item<double>();
        for (const auto& p : loaded.model->parameters())
            EXPECT_TRUE(at::all(p.eq(value)).item<bool>());
        EXPECT_EQ(loaded.info.extras.front().second, std::to_string(static_cast<int>(value)));
    }
}

}  // namespace
}  // namespace fec::train
