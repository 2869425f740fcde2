#include "fec/imaging/kmeans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

namespace fec::imaging {

namespace {

// Seeds OpenCV's thread-local RNG for the lifetime of the guard and restores it afterwards, so that
// a merge neither depends on nor disturbs whatever else uses theRNG() on this thread.
class RngSeedGuard {
public:
    explicit RngSeedGuard(uint64_t seed) : m_saved(cv::theRNG().state)
    {
        cv::theRNG().state = cv::RNG(seed).state;  // cv::RNG maps seed 0 to a non-degenerate state
    }
    ~RngSeedGuard() { cv::theRNG().state = m_saved; }
    RngSeedGuard(const RngSeedGuard&) = delete;
    RngSeedGuard& operator=(const RngSeedGuard&) = delete;

private:
    uint64_t m_saved;
};

uint64_t splitMix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::vector<std::vector<double>> groupMeans(const cv::Mat& features, const std::vector<int>& group, int k)
{
    std::vector<std::vector<double>> means(k, std::vector<double>(features.cols, 0.0));
    std::vector<int> count(k, 0);
    for (int i = 0; i < features.rows; ++i) {
        const float* row = features.ptr<float>(i);
        auto& m = means[group[i]];
        for (int c = 0; c < features.cols; ++c)
            m[c] += row[c];
        ++count[group[i]];
    }
    for (int g = 0; g < k; ++g)
        if (count[g] > 0)
            for (double& v : means[g])
                v /= count[g];
    return means;
}

double squaredDistance(const float* row, const std::vector<double>& mean)
{
    double sum = 0;
    for (size_t c = 0; c < mean.size(); ++c) {
        const double d = row[c] - mean[c];
        sum += d * d;
    }
    return sum;
}

}  // namespace

ClusterMerger::ClusterMerger(const SegmentPyramid& pyramid, MergeFeatures features, int attempts, uint64_t seed)
    : m_attempts(std::max(1, attempts)), m_seed(seed)
{
    if (pyramid.levels.empty())
        throw std::invalid_argument("the segment pyramid has no levels");
    const size_t last = pyramid.levels.size() - 1;
    if (last >= 3)
        throw std::invalid_argument("the segment pyramid has more levels than ClusterPools");
    const auto& level = pyramid.levels[last];
    const at::Tensor& source =
        features == MergeFeatures::KeyCentres ? pyramid.keyCentres[last] : pyramid.representatives[last];
    if (!source.defined() || source.dim() != 2 || source.size(0) != level.gridH * level.gridW)
        throw std::invalid_argument(
            "the segment pyramid has no " +
            std::string(features == MergeFeatures::KeyCentres ? "key centres" : "representatives") +
            " for its last level");

    const auto values = source.to(at::kFloat).contiguous();
    const int64_t channels = values.size(1);
    const int rows = static_cast<int>(level.nonEmpty.size());
    m_features.create(rows, static_cast<int>(channels), CV_32F);
    for (int i = 0; i < rows; ++i) {
        const float* src = values.data_ptr<float>() + static_cast<int64_t>(level.nonEmpty[i]) * channels;
        std::copy(src, src + channels, m_features.ptr<float>(i));
    }

    if (!cv::checkRange(m_features))
        throw std::invalid_argument("the cluster features contain NaN or infinite values");

    m_blockH = pyramid.blockH;
    m_blockW = pyramid.blockW;
    m_blockSize = pyramid.blockSize;
    m_blockCluster.resize(level.blockLabel.size());
    m_clusterPixels.assign(rows, 0);
    const int64_t pixelsPerBlock = static_cast<int64_t>(m_blockSize) * m_blockSize;
    for (size_t b = 0; b < level.blockLabel.size(); ++b) {
        const int32_t compact = level.compact[level.blockLabel[b]];
        m_blockCluster[b] = compact;
        m_clusterPixels[compact] += pixelsPerBlock;
    }
}

int ClusterMerger::maxK() const
{
    return m_features.rows;
}

const KMeansMerge& ClusterMerger::merge(int k)
{
    if (k < 2 || k > maxK())
        throw std::invalid_argument("k must be between 2 and the number of non-empty clusters (" +
                                    std::to_string(maxK()) + "), got " + std::to_string(k));
    if (auto it = m_merges.find(k); it != m_merges.end())
        return it->second;
    KMeansMerge m;
    m.k = k;
    m.groupOfCluster = runKMeans(k);
    m.inertia = inertiaOf(m.groupOfCluster);
    m.colourOfGroup = inheritColours(m.groupOfCluster, k);
    return m_merges.emplace(k, std::move(m)).first->second;
}

std::vector<int> ClusterMerger::runKMeans(int k) const
{
    // Each attempt gets its own seed instead of continuing one random stream: attempt a then
    // seeds k and k + 1 with the same first k centres, which keeps merges of neighbouring k alike.
    std::vector<int> raw;
    double best = std::numeric_limits<double>::infinity();
    for (int attempt = 0; attempt < m_attempts; ++attempt) {
        cv::Mat labels, centres;
        {
            RngSeedGuard guard(splitMix64(m_seed + static_cast<uint64_t>(attempt)));
            cv::kmeans(m_features, k, labels,
                       cv::TermCriteria(cv::TermCriteria::EPS + cv::TermCriteria::MAX_ITER, 300, 1e-4), 1,
                       cv::KMEANS_PP_CENTERS, centres);
        }
        std::vector<int> candidate(labels.begin<int>(), labels.end<int>());
        const double inertia = inertiaOf(candidate);
        if (inertia < best) {
            best = inertia;
            raw = std::move(candidate);
        }
    }

    // With duplicated features a group can end up empty; give it the member farthest from the
    // mean of the largest group so that a merge always has exactly k groups.
    std::vector<int> count(k, 0);
    for (int g : raw)
        ++count[g];
    for (int g = 0; g < k; ++g) {
        if (count[g] > 0)
            continue;
        const int donor = static_cast<int>(std::max_element(count.begin(), count.end()) - count.begin());
        const auto means = groupMeans(m_features, raw, k);
        int farthest = -1;
        double farthestDistance = -1;
        for (int i = 0; i < m_features.rows; ++i) {
            if (raw[i] != donor)
                continue;
            const double d = squaredDistance(m_features.ptr<float>(i), means[donor]);
            if (d > farthestDistance) {
                farthestDistance = d;
                farthest = i;
            }
        }
        raw[farthest] = g;
        --count[donor];
        ++count[g];
    }

    // Number groups by first appearance so that the labels do not depend on OpenCV's numbering.
    std::vector<int> renumber(k, -1);
    int next = 0;
    std::vector<int> groups(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        if (renumber[raw[i]] < 0)
            renumber[raw[i]] = next++;
        groups[i] = renumber[raw[i]];
    }
    return groups;
}

std::vector<int> ClusterMerger::inheritColours(const std::vector<int>& groupOfCluster, int k) const
{
    std::vector<int64_t> size(k, 0);
    for (size_t i = 0; i < groupOfCluster.size(); ++i)
        size[groupOfCluster[i]] += m_clusterPixels[i];
    std::vector<int> bySize(k);
    std::iota(bySize.begin(), bySize.end(), 0);
    std::stable_sort(bySize.begin(), bySize.end(), [&](int a, int b) { return size[a] > size[b]; });

    std::vector<int> colour(k, -1);
    if (m_merges.empty()) {
        for (int rank = 0; rank < k; ++rank)
            colour[bySize[rank]] = rank;
        return colour;
    }

    auto ref = m_merges.find(k - 1);
    if (ref == m_merges.end())
        ref = m_merges.find(k + 1);
    if (ref == m_merges.end()) {
        ref = m_merges.begin();
        for (auto it = m_merges.begin(); it != m_merges.end(); ++it)
            if (std::abs(it->first - k) < std::abs(ref->first - k))
                ref = it;
    }
    const KMeansMerge& previous = ref->second;

    std::vector<int64_t> overlap(static_cast<size_t>(k) * previous.k, 0);
    for (size_t i = 0; i < groupOfCluster.size(); ++i)
        overlap[static_cast<size_t>(groupOfCluster[i]) * previous.k + previous.groupOfCluster[i]] += m_clusterPixels[i];
    std::vector<std::tuple<int64_t, int, int>> pairs;
    for (int g = 0; g < k; ++g)
        for (int p = 0; p < previous.k; ++p)
            if (overlap[static_cast<size_t>(g) * previous.k + p] > 0)
                pairs.emplace_back(overlap[static_cast<size_t>(g) * previous.k + p], g, p);
    std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
        if (std::get<0>(a) != std::get<0>(b))
            return std::get<0>(a) > std::get<0>(b);
        return std::make_pair(std::get<1>(a), std::get<2>(a)) < std::make_pair(std::get<1>(b), std::get<2>(b));
    });

    std::vector<bool> previousTaken(previous.k, false);
    std::vector<int> used;
    for (const auto& [pixels, g, p] : pairs) {
        if (colour[g] >= 0 || previousTaken[p])
            continue;
        colour[g] = previous.colourOfGroup[p];
        previousTaken[p] = true;
        used.push_back(colour[g]);
    }
    for (int g : bySize) {
        if (colour[g] >= 0)
            continue;
        int c = 0;
        while (std::find(used.begin(), used.end(), c) != used.end())
            ++c;
        colour[g] = c;
        used.push_back(c);
    }
    return colour;
}

double ClusterMerger::inertiaOf(const std::vector<int>& groupOfCluster) const
{
    if (static_cast<int>(groupOfCluster.size()) != m_features.rows)
        throw std::invalid_argument("inertiaOf: expected one group per non-empty cluster (" +
                                    std::to_string(m_features.rows) + "), got " +
                                    std::to_string(groupOfCluster.size()));
    int k = 0;
    for (int g : groupOfCluster) {
        if (g < 0)
            throw std::invalid_argument("inertiaOf: negative group id");
        k = std::max(k, g + 1);
    }
    const auto means = groupMeans(m_features, groupOfCluster, k);
    double sum = 0;
    for (int i = 0; i < m_features.rows; ++i)
        sum += squaredDistance(m_features.ptr<float>(i), means[groupOfCluster[i]]);
    return sum;
}

at::Tensor ClusterMerger::blockLabels(const KMeansMerge& merge) const
{
    if (static_cast<int>(merge.groupOfCluster.size()) != maxK())
        throw std::invalid_argument("blockLabels: the merge belongs to another pyramid");
    auto out = at::empty({m_blockH, m_blockW}, at::kInt);
    auto* d = out.data_ptr<int32_t>();
    for (size_t b = 0; b < m_blockCluster.size(); ++b)
        d[b] = merge.groupOfCluster[m_blockCluster[b]];
    return out;
}

at::Tensor ClusterMerger::pixelLabels(const KMeansMerge& merge) const
{
    return blockLabels(merge).repeat_interleave(m_blockSize, 0).repeat_interleave(m_blockSize, 1).contiguous();
}

}  // namespace fec::imaging
