// `fec eval --segmentation-iou` scores: IoUs of merged final clusters against an object mask.

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/segmentation_score.h"
#include "reference.h"
#include "fec/explain/segmentation_eval.h"

namespace fec::imaging {
namespace {

// The best IoU over all proper, non-empty unions, by brute force.
double bruteForceBest(const ClusterMaskCounts& c)
{
    const auto k = c.pixels.size();
    double best = 0;
    for (uint64_t s = 1; s + 1 < (uint64_t{1} << k); ++s) {
        int64_t in = 0, object = 0;
        for (size_t j = 0; j < k; ++j) {
            if (s >> j & 1) {
                in += c.pixels[j];
                object += c.objectPixels[j];
            }
        }
        best = std::max(best, static_cast<double>(object) / static_cast<double>(in + c.maskPixels - object));
    }
    return best;
}

ClusterMaskCounts randomCounts(size_t k, std::mt19937& rng)
{
    ClusterMaskCounts c;
    std::uniform_int_distribution<int64_t> size(1, 400);
    for (size_t j = 0; j < k; ++j) {
        const auto pixels = size(rng);
        const auto object = std::uniform_int_distribution<int64_t>(0, pixels)(rng);
        c.pixels.push_back(pixels);
        c.objectPixels.push_back(object);
        c.totalPixels += pixels;
        c.maskPixels += object;
    }
    return c;
}

TEST(SegmentationScore, BestMergeIsTheOptimumOverAllUnions)
{
    std::mt19937 rng(7);
    for (size_t k : {2u, 3u, 5u, 9u, 16u}) {
        for (int trial = 0; trial < 20; ++trial) {
            const auto c = randomCounts(k, rng);
            EXPECT_NEAR(bestTwoWayIoU(c), bruteForceBest(c), 1e-12) << "k = " << k;
        }
    }
}

TEST(SegmentationScore, PurityOrderMatchesBruteForceBeyondTwentyClusters)
{
    std::mt19937 rng(11);
    for (int trial = 0; trial < 3; ++trial) {
        const auto c = randomCounts(22, rng);  // 2^22 subsets: the purity path is taken
        EXPECT_NEAR(bestTwoWayIoU(c), bruteForceBest(c), 1e-12);
    }
}

TEST(SegmentationScore, WholeImageAndGroupScores)
{
    ClusterMaskCounts c;
    c.pixels = {10, 30, 60};
    c.objectPixels = {10, 20, 0};
    c.totalPixels = 100;
    c.maskPixels = 30;
    EXPECT_DOUBLE_EQ(wholeImageIoU(c), 0.3);
    EXPECT_DOUBLE_EQ(groupIoU(c, {0, 0, 1}, 0), 30.0 / 40.0);
    EXPECT_DOUBLE_EQ(groupIoU(c, {0, 0, 1}, 1), 0.0);
    EXPECT_DOUBLE_EQ(bestTwoWayIoU(c), 30.0 / 40.0);
    EXPECT_THROW(groupIoU(c, {0, 1}, 0), std::invalid_argument);
}

// On a real traced image: a mask that is exactly a union of final clusters scores 1 for the
// best merge, and a K-means merge can never beat the best merge.
TEST(SegmentationScore, RealPyramidBounds)
{
    auto loaded = loadCheckpoint(test::referencePath("fec_small_seed0.pth.tar"), {WeightsChoice::StateDict, {}});
    c10::InferenceMode guard;
    auto trace = loaded.model->forwardTraced(test::loadReference("inputs/input_batch.npy").narrow(0, 0, 1));
    const auto pyramid = buildPyramid(trace, 0);
    const auto labels = pyramid.pixelLabels(pyramid.levelCount()).contiguous();
    const auto* label = labels.data_ptr<int32_t>();
    const auto pixels = static_cast<size_t>(labels.numel());
    ASSERT_GE(pyramid.levels.back().nonEmpty.size(), 3u);

    std::vector<uint8_t> mask(pixels);
    for (size_t i = 0; i < pixels; ++i)
        mask[i] = label[i] == 0 || label[i] == 2;  // clusters 0 and 2
    const auto counts = countClusterMask(pyramid, mask);
    EXPECT_DOUBLE_EQ(bestTwoWayIoU(counts), 1.0);
    int64_t total = 0;
    for (auto p : counts.pixels)
        total += p;
    EXPECT_EQ(total, static_cast<int64_t>(pixels));

    ClusterMerger keys(pyramid, MergeFeatures::KeyCentres), reps(pyramid, MergeFeatures::Representatives);
    const double byKeys = kmeansTwoWayIoU(keys, counts), byReps = kmeansTwoWayIoU(reps, counts);
    EXPECT_GT(byKeys, 0.0);
    EXPECT_LE(byKeys, 1.0);
    EXPECT_LE(byReps, 1.0);

    std::vector<uint8_t> all(pixels, 1), none(pixels, 0);
    EXPECT_DOUBLE_EQ(wholeImageIoU(countClusterMask(pyramid, all)), 1.0);
    EXPECT_DOUBLE_EQ(bestTwoWayIoU(countClusterMask(pyramid, none)), 0.0);
    EXPECT_THROW(countClusterMask(pyramid, std::vector<uint8_t>(pixels - 1)), std::invalid_argument);
}

TEST(SegmentationScore, ObjectMaskFollowsTheEvaluationResize)
{
    // A 28x28 grey image with a bright 14x14 square in its top-left quarter.
    auto image = at::zeros({28, 28, 1}, at::kByte);
    image.narrow(0, 0, 14).narrow(1, 0, 14).fill_(200);
    const auto squash = explain::objectMask(image, 64, train::EvalResize::Squash);
    int64_t on = 0;
    for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x) {
            const bool inside = y < 32 && x < 32;
            EXPECT_EQ(squash[static_cast<size_t>(y * 64 + x)] != 0, inside) << x << "," << y;
            on += squash[static_cast<size_t>(y * 64 + x)] != 0;
        }
    EXPECT_EQ(on, 32 * 32);
    // The centre crop keeps the middle 90%: the square still covers the top-left corner pixel.
    const auto crop = explain::objectMask(image, 64, train::EvalResize::Crop);
    EXPECT_TRUE(crop[0]);
    EXPECT_FALSE(crop[64 * 64 - 1]);
}

}  // namespace
}  // namespace fec::imaging
