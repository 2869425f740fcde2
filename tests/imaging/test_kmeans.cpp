// K-means merges of the final clusters: as good as scikit-learn's on the reference fixtures,
// deterministic, and with colours that stay with their regions when k changes.

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/imaging/kmeans.h"
#include "reference.h"

namespace fec::imaging {
namespace {

struct Case {
    std::string model;       // folder under reference/
    std::string checkpoint;  // file under reference/
    WeightsChoice weights;
    int image;  // row of input_batch
};

std::string caseName(const ::testing::TestParamInfo<Case>& info)
{
    std::string name = info.param.model + "_image" + std::to_string(info.param.image);
    std::replace(name.begin(), name.end(), '.', '_');
    return name;
}

// One forward per checkpoint for the whole test program.
const SegmentPyramid& pyramidOf(const Case& c)
{
    static std::map<std::pair<std::string, int>, SegmentPyramid> cache;
    const auto key = std::make_pair(c.checkpoint, c.image);
    if (auto it = cache.find(key); it != cache.end())
        return it->second;
    auto loaded = loadCheckpoint(test::referencePath(c.checkpoint), LoadOptions{c.weights, {}});
    const auto input = test::loadReference("inputs/input_batch.npy");
    c10::InferenceMode guard;
    const auto trace = loaded.model->forwardTraced(input);
    for (int i = 0; i < input.size(0); ++i)
        cache.emplace(std::make_pair(c.checkpoint, i), buildPyramid(trace, i));
    return cache.at(key);
}

double manifestInertia(const std::string& file)
{
    static const nlohmann::json manifest = [] {
        std::ifstream in(test::referencePath("manifest.json"));
        return nlohmann::json::parse(in);
    }();
    for (const auto& entry : manifest.at("files"))
        if (entry.at("file") == file)
            return entry.at("inertia").get<double>();
    ADD_FAILURE() << "manifest.json has no entry for " << file;
    return 0;
}

std::vector<int> toInts(const at::Tensor& t)
{
    const auto c = t.to(at::kInt).contiguous();
    return std::vector<int>(c.data_ptr<int32_t>(), c.data_ptr<int32_t>() + c.numel());
}

std::string segments(const Case& c, const std::string& file)
{
    return c.model + "/segments/" + file;
}

class KMeansMerges : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override
    {
        if (!test::referenceExists(GetParam().checkpoint))
            GTEST_SKIP() << "reference fixtures missing at " << test::referenceDir();
    }
};

TEST_P(KMeansMerges, FinalClustersAndFeaturesAreTheReferenceOnes)
{
    const auto& c = GetParam();
    const auto& pyramid = pyramidOf(c);
    const auto expected =
        toInts(test::loadReference(segments(c, "non_empty_clusters_" + std::to_string(c.image) + ".npy")));
    const auto& nonEmpty = pyramid.levels.back().nonEmpty;
    EXPECT_EQ(std::vector<int>(nonEmpty.begin(), nonEmpty.end()), expected);

    ClusterMerger merger(pyramid);
    ASSERT_EQ(merger.maxK(), static_cast<int>(expected.size()));
    const auto feats = test::loadReference(segments(c, "kmeans_feats_" + std::to_string(c.image) + ".npy"));
    const auto ours = at::from_blob(const_cast<uchar*>(merger.features().data),
                                    {merger.features().rows, merger.features().cols}, at::kFloat);
    ASSERT_EQ(ours.sizes(), feats.sizes());
    EXPECT_LE(test::maxAbsDiff(ours, feats), 1e-4);

    // The reference labels scored by our inertia give scikit-learn's inertia: same features,
    // same objective.
    for (int k : {3, 5}) {
        const std::string file = "kmeans" + std::to_string(k) + "_labels_" + std::to_string(c.image) + ".npy";
        const double reference = manifestInertia(segments(c, file));
        const double scored = merger.inertiaOf(toInts(test::loadReference(segments(c, file))));
        EXPECT_NEAR(scored, reference, 1e-3 * reference) << file;
    }
}

TEST_P(KMeansMerges, MergesArePartitionsAtLeastAsTightAsScikitLearn)
{
    const auto& c = GetParam();
    ClusterMerger merger(pyramidOf(c));
    for (int k : {3, 5}) {
        const auto& m = merger.merge(k);
        EXPECT_EQ(m.k, k);
        ASSERT_EQ(static_cast<int>(m.groupOfCluster.size()), merger.maxK());
        std::vector<int> members(k, 0);
        for (int g : m.groupOfCluster) {
            ASSERT_GE(g, 0);
            ASSERT_LT(g, k);
            ++members[g];
        }
        for (int g = 0; g < k; ++g)
            EXPECT_GT(members[g], 0) << "group " << g << " of k = " << k << " is empty";
        ASSERT_EQ(static_cast<int>(m.colourOfGroup.size()), k);
        EXPECT_EQ(std::set<int>(m.colourOfGroup.begin(), m.colourOfGroup.end()).size(), static_cast<size_t>(k))
            << "two groups share a colour";

        const std::string file = "kmeans" + std::to_string(k) + "_labels_" + std::to_string(c.image) + ".npy";
        const double reference = manifestInertia(segments(c, file));
        EXPECT_LE(m.inertia, reference * (1 + 1e-4)) << "k = " << k;
        EXPECT_NEAR(m.inertia, merger.inertiaOf(m.groupOfCluster), 1e-9 * reference);
    }
}

TEST_P(KMeansMerges, PixelLabelsFollowTheFinalSegments)
{
    const auto& c = GetParam();
    const auto& pyramid = pyramidOf(c);
    ClusterMerger merger(pyramid);
    const auto& m = merger.merge(4);
    const auto pixels = merger.pixelLabels(m);
    ASSERT_EQ(pixels.sizes(), (at::IntArrayRef{pyramid.inputH, pyramid.inputW}));
    EXPECT_EQ(pixels.scalar_type(), at::kInt);
    const auto final = test::loadReference(c.model + "/segments/final.npy")[c.image];
    const auto groups = at::tensor(m.groupOfCluster, at::kInt);
    EXPECT_TRUE(pixels.equal(groups.index({final.to(at::kLong)})));
    const auto blocks = merger.blockLabels(m);
    ASSERT_EQ(blocks.sizes(), (at::IntArrayRef{pyramid.blockH, pyramid.blockW}));
    EXPECT_TRUE(blocks.repeat_interleave(pyramid.blockSize, 0).repeat_interleave(pyramid.blockSize, 1).equal(pixels));
}

TEST_P(KMeansMerges, SameInputSameMergeWhateverCameBefore)
{
    const auto& pyramid = pyramidOf(GetParam());
    ClusterMerger first(pyramid);
    const auto three = first.merge(3).groupOfCluster;
    const auto five = first.merge(5).groupOfCluster;

    // Another merger asked in another order, with OpenCV's RNG used in between.
    cv::theRNG().state = 12345;
    for (int i = 0; i < 17; ++i)
        cv::theRNG().next();
    const uint64_t before = cv::theRNG().state;
    ClusterMerger second(pyramid);
    second.merge(7);
    EXPECT_EQ(second.merge(5).groupOfCluster, five);
    EXPECT_EQ(second.merge(3).groupOfCluster, three);
    EXPECT_EQ(cv::theRNG().state, before) << "merging must leave the caller's RNG state alone";

    // A cached merge never changes.
    const KMeansMerge* cached = &first.merge(3);
    first.merge(6);
    EXPECT_EQ(&first.merge(3), cached);
    EXPECT_EQ(first.merge(3).groupOfCluster, three);
}

TEST_P(KMeansMerges, ColoursStayWithTheirRegionsAsKGrows)
{
    const auto& pyramid = pyramidOf(GetParam());
    ClusterMerger merger(pyramid);
    const auto& pixels = merger.clusterPixels();

    const auto& first = merger.merge(2);
    std::vector<int64_t> size(2, 0);
    for (size_t i = 0; i < pixels.size(); ++i)
        size[first.groupOfCluster[i]] += pixels[i];
    EXPECT_EQ(first.colourOfGroup[size[0] >= size[1] ? 0 : 1], 0) << "the largest group gets the first colour";

    // K-means partitions of consecutive k are not nested; over the range people use (the paper
    // shows 3 and 5) a new k splits or moves one group and the others keep their colours.
    for (int k = 2; k < std::min(8, merger.maxK()); ++k) {
        const auto& before = merger.merge(k);
        const auto& after = merger.merge(k + 1);
        // A group keeps its colour when it takes the colour of the old group it overlaps most.
        std::vector<std::vector<int64_t>> overlap(k + 1, std::vector<int64_t>(k, 0));
        for (size_t i = 0; i < pixels.size(); ++i)
            overlap[after.groupOfCluster[i]][before.groupOfCluster[i]] += pixels[i];
        int kept = 0;
        for (int g = 0; g <= k; ++g) {
            const int dominant =
                static_cast<int>(std::max_element(overlap[g].begin(), overlap[g].end()) - overlap[g].begin());
            kept += after.colourOfGroup[g] == before.colourOfGroup[dominant];
        }
        EXPECT_GE(kept, k - 1) << "k = " << k << " -> " << k + 1;
    }
}

TEST_P(KMeansMerges, RepresentativesAreTheOtherFeatureSpace)
{
    const auto& pyramid = pyramidOf(GetParam());
    ClusterMerger keys(pyramid, MergeFeatures::KeyCentres);
    ClusterMerger reps(pyramid, MergeFeatures::Representatives);
    ASSERT_EQ(reps.maxK(), keys.maxK());
    EXPECT_FALSE(cv::norm(reps.features(), keys.features(), cv::NORM_INF) == 0);
    const auto& m = reps.merge(3);
    EXPECT_EQ(static_cast<int>(m.groupOfCluster.size()), reps.maxK());
    EXPECT_GT(m.inertia, 0);
}

TEST_P(KMeansMerges, KOutOfRangeThrows)
{
    ClusterMerger merger(pyramidOf(GetParam()));
    EXPECT_THROW(merger.merge(1), std::invalid_argument);
    EXPECT_THROW(merger.merge(0), std::invalid_argument);
    EXPECT_THROW(merger.merge(merger.maxK() + 1), std::invalid_argument);
    const auto& all = merger.merge(merger.maxK());
    EXPECT_EQ(std::set<int>(all.groupOfCluster.begin(), all.groupOfCluster.end()).size(),
              static_cast<size_t>(merger.maxK()));
}

INSTANTIATE_TEST_SUITE_P(
    Reference, KMeansMerges,
    ::testing::Values(Case{"fec_small_seed0", "fec_small_seed0.pth.tar", WeightsChoice::StateDict, 0},
                      Case{"fec_small_seed0", "fec_small_seed0.pth.tar", WeightsChoice::StateDict, 1},
                      Case{"tiny_seed0", "tiny_seed0.pth.tar", WeightsChoice::Auto, 0},
                      Case{"tiny_seed0", "tiny_seed0.pth.tar", WeightsChoice::Auto, 1}),
    caseName);

// A one-level pyramid: 2x2 blocks of 4x4 pixels, each block its own cluster of a 1x4 grid.
SegmentPyramid tinyPyramid(const at::Tensor& features)
{
    SegmentPyramid p;
    p.inputH = p.inputW = 8;
    p.blockH = p.blockW = 2;
    PyramidLevel level;
    level.level = 1;
    level.gridH = 1;
    level.gridW = 4;
    level.blockLabel = {0, 1, 2, 3};
    level.nonEmpty = {0, 1, 2, 3};
    level.compact = {0, 1, 2, 3};
    p.levels.push_back(level);
    p.keyCentres[0] = features;
    p.representatives[0] = features;
    return p;
}

TEST(ClusterMerger, IdenticalFeaturesStillGiveKGroups)
{
    ClusterMerger merger(tinyPyramid(at::ones({4, 3})));
    const auto& m = merger.merge(3);
    EXPECT_EQ(std::set<int>(m.groupOfCluster.begin(), m.groupOfCluster.end()).size(), 3u);
    EXPECT_EQ(m.inertia, 0);
    const auto pixels = merger.pixelLabels(m);
    EXPECT_EQ(pixels.sizes(), (at::IntArrayRef{8, 8}));
    EXPECT_EQ(pixels[0][0].item<int>(), m.groupOfCluster[0]);
    EXPECT_EQ(pixels[7][7].item<int>(), m.groupOfCluster[3]);
}

TEST(ClusterMerger, RejectsPyramidsItCannotMerge)
{
    EXPECT_THROW(ClusterMerger(SegmentPyramid{}), std::invalid_argument);
    auto nan = at::ones({4, 3});
    nan[2][1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(ClusterMerger(tinyPyramid(nan)), std::invalid_argument);
    EXPECT_THROW(ClusterMerger(tinyPyramid(at::ones({5, 3}))), std::invalid_argument);
}

}  // namespace
}  // namespace fec::imaging
