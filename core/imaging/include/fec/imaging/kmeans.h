#pragma once

// K-means merges of the final pyramid level into a few groups, for inspection (fec-model.md,
// "Interpretability as the paper defines it").

#include <cstdint>
#include <map>
#include <vector>

#include <ATen/Tensor.h>
#include <opencv2/core.hpp>

#include "fec/analysis.h"

namespace fec::imaging {

/// Which per-cluster features K-means sees.
enum class MergeFeatures {
    KeyCentres,       ///< pooled key centres (Kc) of the last ClusterPool: the authors' figures
    Representatives,  ///< representatives (R) of the last ClusterPool: the paper's text
};

/// One merge of the final level's non-empty clusters into k groups.
struct KMeansMerge {
    int k = 0;
    /// Group (0..k-1) of each non-empty final cluster, in SegmentPyramid::levels.back().nonEmpty
    /// order. Groups are numbered by first appearance in that order; every group is non-empty.
    std::vector<int> groupOfCluster;
    /// Palette index of each group, stable across k (see ClusterMerger::merge).
    std::vector<int> colourOfGroup;
    /// Within-group sum of squared distances to the group means, in the feature space.
    double inertia = 0;
};

/// Merges the non-empty clusters of a pyramid's last level with K-means (k-means++ seeding,
/// `attempts` restarts, best inertia kept). Results are deterministic: the same pyramid, features,
/// attempts and seed give the same merges, whatever else was computed before. Copies what it
/// needs from the pyramid. Not thread-safe (merges are cached).
class ClusterMerger {
public:
    /// Throws std::invalid_argument when the pyramid has no levels, no features for its last pool,
    /// or non-finite features.
    explicit ClusterMerger(const SegmentPyramid& pyramid, MergeFeatures features = MergeFeatures::KeyCentres,
                           int attempts = 8, uint64_t seed = 0);

    /// Number of non-empty final clusters (the largest k).
    int maxK() const;
    /// The merge into k groups, computed once per k and cached; the reference stays valid for the
    /// merger's lifetime. Colours: the first merge computed colours its groups 0..k-1 by size
    /// (pixels, descending); later merges match their groups to the closest computed k (k-1 first,
    /// then k+1) by pixel overlap and inherit those colours; the rest take the smallest free index.
    /// Throws std::invalid_argument unless 2 <= k <= maxK().
    const KMeansMerge& merge(int k);

    /// Group label of every model-input pixel: [inputH, inputW] int32.
    at::Tensor pixelLabels(const KMeansMerge& merge) const;
    /// Group label of every pixel block: [blockH, blockW] int32.
    at::Tensor blockLabels(const KMeansMerge& merge) const;

    /// Within-group sum of squares of any grouping of the non-empty clusters (one group id >= 0
    /// per cluster, nonEmpty order), computed in double. Throws std::invalid_argument on a size
    /// mismatch or a negative id.
    double inertiaOf(const std::vector<int>& groupOfCluster) const;
    /// The K-means input: [maxK(), C] float32 rows in nonEmpty order.
    const cv::Mat& features() const { return m_features; }
    /// Pixels covered by each non-empty final cluster (nonEmpty order).
    const std::vector<int64_t>& clusterPixels() const { return m_clusterPixels; }

private:
    std::vector<int> runKMeans(int k) const;
    std::vector<int> inheritColours(const std::vector<int>& groupOfCluster, int k) const;

    cv::Mat m_features;
    std::vector<int32_t> m_blockCluster;  // compact final-level label of every block
    std::vector<int64_t> m_clusterPixels;
    int64_t m_blockH = 0, m_blockW = 0;
    int m_blockSize = 1;
    int m_attempts = 1;
    uint64_t m_seed = 0;
    std::map<int, KMeansMerge> m_merges;
};

}  // namespace fec::imaging
