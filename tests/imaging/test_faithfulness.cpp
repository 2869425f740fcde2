// `fec eval --faithfulness`: AUCs, ROAD's imputation, deletion order, and the CLI's JSON.

#include <atomic>
#include <cmath>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../cli/run_fec.h"
#include "fec/checkpoint.h"
#include "fec/explain/faithfulness.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"

namespace fec::explain {
namespace {

namespace fs = std::filesystem;
const std::string kFashion = "/usr/share/datasets/fashion-mnist";
const std::string kModel = std::string(FEC_SOURCE_DIR) + "/models/fec-fashion-128.pth.tar";

TEST(Faithfulness, TrapezoidAucOfKnownCurves)
{
    EXPECT_DOUBLE_EQ(trapezoidAuc({0.0, 1.0}, {1.0, 0.0}), 0.5);
    std::vector<double> x, y;
    for (int i = 0; i <= 1000; ++i) {
        x.push_back(i / 1000.0);
        y.push_back(x.back() * x.back());
    }
    EXPECT_NEAR(trapezoidAuc(x, y), 1.0 / 3.0, 1e-6);
    // Uneven steps: a constant curve integrates to its value.
    EXPECT_DOUBLE_EQ(trapezoidAuc({0.0, 0.1, 0.7, 1.0}, {0.4, 0.4, 0.4, 0.4}), 0.4);
    EXPECT_EQ(stepCounts(10, 4, 0), (std::vector<int64_t>{0, 3, 5, 8, 10}));
    EXPECT_EQ(stepCounts(10, 32, 4), (std::vector<int64_t>{0, 4, 8, 10}));
}

TEST(Faithfulness, RoadImputationReproducesKnownValues)
{
    // A removed pixel surrounded by equal values takes that value; a removed block inside a
    // linear ramp reproduces the ramp (the weighted neighbour mean of a linear field is exact).
    const int64_t h = 9, w = 9;
    auto image = at::empty({2, h, w}, at::kFloat);
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            image[0][y][x] = 0.7f;
            image[1][y][x] = static_cast<float>(0.1 * x - 0.05 * y);
        }
    std::vector<uint8_t> removed(static_cast<size_t>(h * w), 0);
    removed[4 * w + 4] = 1;
    auto out = imputeRemoved(image, removed, 0.0, 1);
    EXPECT_NEAR(out[0][4][4].item<float>(), 0.7f, 1e-6);
    for (int64_t y = 2; y <= 6; ++y)
        for (int64_t x = 3; x <= 5; ++x)
            removed[static_cast<size_t>(y * w + x)] = 1;
    out = imputeRemoved(image, removed, 0.0, 1);
    EXPECT_LT(out.sub(image).abs().max().item<float>(), 1e-4);
    // Noise on: imputed pixels move, known pixels do not.
    const auto noisy = imputeRemoved(image, removed, 0.01, 1);
    EXPECT_GT(noisy.sub(image).abs().max().item<float>(), 1e-4);
    EXPECT_EQ(noisy[0][0][0].item<float>(), image[0][0][0].item<float>());
}

TEST(Faithfulness, RoadImputationOfAffineChannelsEqualsSolvingEachChannel)
{
    // A grey image normalised per channel has channels a v + b of one another; the imputer solves
    // one system for them. Each channel must still equal the channel imputed on its own, and a
    // colour image (channels unrelated) must too.
    const int64_t h = 24, w = 20;
    auto grey = at::empty({h, w}, at::kFloat), colour = at::empty({3, h, w}, at::kFloat);
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            grey[y][x] = static_cast<float>(std::sin(0.3 * x) * std::cos(0.2 * y) + 0.01 * x * y);
            colour[0][y][x] = static_cast<float>(std::cos(0.5 * x + 0.1 * y));
            colour[1][y][x] = static_cast<float>(0.02 * x * x - 0.3 * y);
            colour[2][y][x] = static_cast<float>(std::sin(0.7 * y) * 0.5);
        }
    const auto normalised =
        at::stack({grey.sub(0.485).div(0.229), grey.sub(0.456).div(0.224), grey.sub(0.406).div(0.225)});  // [3, H, W]
    std::vector<uint8_t> removed(static_cast<size_t>(h * w), 0);
    for (int64_t y = 3; y < 19; ++y)  // a large hole, a stripe to the border and scattered pixels
        for (int64_t x = 4; x < 15; ++x)
            removed[static_cast<size_t>(y * w + x)] = 1;
    for (int64_t x = 0; x < w; ++x)
        removed[static_cast<size_t>(21 * w + x)] = 1;
    for (int64_t p = 0; p < h * w; p += 7)
        removed[static_cast<size_t>(p)] = 1;
    for (const auto& image : {normalised, colour}) {
        const auto together = imputeRemoved(image, removed, 0.0, 3);
        for (int64_t c = 0; c < 3; ++c) {
            const auto alone = imputeRemoved(image.slice(0, c, c + 1), removed, 0.0, 3)[0];
            EXPECT_LT(together[c].sub(alone).abs().max().item<float>(), 2e-5) << "channel " << c;
        }
        // Pixels kept are untouched.
        EXPECT_EQ(together[1][0][1].item<float>(), image[1][0][1].item<float>());
    }
}

TEST(Faithfulness, TopRankedDeletionDropsFasterThanReverse)
{
    if (!train::FashionMnist::detect(kFashion) || !fs::exists(kModel))
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto model = loadCheckpoint(kModel).model;
    model->eval();
    train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 2);
    const auto sample = data.get(0);
    const int size = 128;
    const auto input = train::evalTransform(sample.image, size, train::EvalResize::Squash);
    const auto maps = saliencyMaps(*model, input);
    EXPECT_EQ(maps.predicted, sample.label);
    // HiResCAM on the normalised final map is the exact evidence, position by position.
    EXPECT_LT(maps.hiresMaxDiff, 1e-5);

    FaithfulnessOptions o;
    o.steps = 16;
    // Mean-colour deletion on Fashion-MNIST also punishes removing the black background (the
    // grey canvas is far from the data), so the pixels the model's own gradients rank first are
    // the ordering tested: they must drop the probability faster than the same ranking reversed.
    const auto order = rankPixels(maps.maps[static_cast<size_t>(SaliencyMethod::GradInput)], 0);
    const std::vector<int64_t> reverse(order.rbegin(), order.rend());
    const auto first = deletionCurve(*model, input, maps.predicted, order, false, o);
    const auto last = deletionCurve(*model, input, maps.predicted, reverse, false, o);
    ASSERT_EQ(first.x.size(), 17u);
    EXPECT_DOUBLE_EQ(first.x.back(), 1.0);
    EXPECT_NEAR(first.y.front(), last.y.front(), 1e-6);
    EXPECT_LT(first.auc, last.auc);
    // Insertion of the same ranking rises faster than its reverse.
    EXPECT_GT(deletionCurve(*model, input, maps.predicted, order, true, o).auc,
              deletionCurve(*model, input, maps.predicted, reverse, true, o).auc);
}

TEST(Faithfulness, CliWritesJsonWithEveryMethod)
{
    if (!train::FashionMnist::detect(kFashion) || !fs::exists(kModel))
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    testing::internal::CaptureStdout();
    const int rc = test::runFec({"eval", "--faithfulness", "--checkpoint", kModel, "--data", kFashion, "--limit", "3",
                                 "--steps", "4", "--random-seeds", "1", "--json"});
    const auto text = testing::internal::GetCapturedStdout();
    ASSERT_EQ(rc, 0) << text;
    const auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j["images"], 3);
    EXPECT_EQ(j["steps"], "4");
    for (const char* method : {"fec_evidence", "ablation_l-1", "gradcam", "hirescam", "grad_x_input", "random"}) {
        ASSERT_TRUE(j["methods"].contains(method)) << method;
        for (const char* metric :
             {"deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_score", "segment_deletion_auc"}) {
            const auto& m = j["methods"][method][metric];
            ASSERT_TRUE(m.contains("mean") && m.contains("sem")) << method << " " << metric;
            EXPECT_TRUE(std::isfinite(m["mean"].get<double>())) << method << " " << metric;
        }
        const double deletion = j["methods"][method]["deletion_auc"]["mean"];
        EXPECT_GE(deletion, 0.0);
        EXPECT_LE(deletion, 1.0);
    }
    for (const char* key : {"mean", "median", "q1", "q3"})
        EXPECT_TRUE(j["spearman"].contains(key)) << key;
}

TEST(Faithfulness, ReportIsTheSameForAnyNumberOfWorkersAndStopsWhenCancelled)
{
    if (!train::FashionMnist::detect(kFashion) || !fs::exists(kModel))
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto model = loadCheckpoint(kModel).model;
    train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 4);
    FaithfulnessOptions o;
    o.steps = 4;
    o.randomSeeds = 1;
    const int threadsBefore = at::get_num_threads();
    // Every worker runs one intra-op thread; one worker on one thread must give the same report to
    // the last bit (two intra-op threads sum convolutions in another order, and near-tied pixels of
    // a map can then swap ranks).
    std::vector<FaithfulnessReport> reports;
    for (int workers : {1, 2}) {
        o.workers = workers;
        if (workers == 1)
            at::set_num_threads(1);
        std::vector<int64_t> calls;
        reports.push_back(
            faithfulnessScores(*model, data, 128, train::EvalResize::Squash, o, [&](int64_t done, int64_t total) {
                EXPECT_EQ(total, 4);
                calls.push_back(done);
            }));
        EXPECT_EQ(calls, (std::vector<int64_t>{1, 2, 3, 4})) << workers << " workers";
        at::set_num_threads(threadsBefore);
    }
    EXPECT_EQ(at::get_num_threads(), threadsBefore) << "the intra-op thread count is restored";
    ASSERT_EQ(reports[0].images, 4);
    ASSERT_EQ(reports[1].images, 4);
    EXPECT_EQ(reports[0].top1, reports[1].top1);
    EXPECT_EQ(reports[0].spearmanMedian, reports[1].spearmanMedian);
    EXPECT_EQ(reports[0].segmentDeletionByAblation.mean, reports[1].segmentDeletionByAblation.mean);
    for (size_t m = 0; m < reports[0].methods.size(); ++m) {
        const auto &a = reports[0].methods[m], &b = reports[1].methods[m];
        EXPECT_EQ(a.deletion.mean, b.deletion.mean) << a.name;
        EXPECT_EQ(a.insertion.mean, b.insertion.mean) << a.name;
        EXPECT_EQ(a.roadScore.mean, b.roadScore.mean) << a.name;
        EXPECT_EQ(a.segmentDeletion.mean, b.segmentDeletion.mean) << a.name;
        EXPECT_EQ(a.roadMorf.sem, b.roadMorf.sem) << a.name;
    }

    // Cancelled after the first image: the workers stop, and the report covers what finished.
    std::atomic<bool> cancel{false};
    o.workers = 2;
    const auto cut = faithfulnessScores(
        *model, data, 128, train::EvalResize::Squash, o, [&](int64_t, int64_t) { cancel = true; }, &cancel);
    EXPECT_GE(cut.images, 1);
    EXPECT_LT(cut.images, 4);
    EXPECT_EQ(cut.methods.size(), reports[0].methods.size());
}

}  // namespace
}  // namespace fec::explain
