#pragma once

// Does segmentation emerge? Scores of a pyramid's final clusters against an object mask: the
// intersection over union of the better segment of a 2-way merge (K-means, or the best possible
// merge), and the trivial whole-image segment as the baseline.

#include <cstdint>
#include <vector>

#include "fec/analysis.h"
#include "fec/imaging/kmeans.h"

namespace fec::imaging {

/// Per final cluster (SegmentPyramid::levels.back().nonEmpty order): pixels, and pixels inside
/// the mask. `mask` holds inputH * inputW bytes (row-major, non-zero = object).
struct ClusterMaskCounts {
    std::vector<int64_t> pixels, objectPixels;
    int64_t maskPixels = 0, totalPixels = 0;
};
ClusterMaskCounts countClusterMask(const SegmentPyramid& pyramid, const std::vector<uint8_t>& mask);

/// IoU of the union of the clusters with group == `group` with the mask (0 when both are empty).
double groupIoU(const ClusterMaskCounts& counts, const std::vector<int>& groupOfCluster, int group);

/// The better of the two segments of a K-means merge into k = 2 groups of the final clusters
/// (`merger` must be built on the same pyramid). With a single non-empty cluster there is nothing
/// to merge: the score is the whole image's.
double kmeansTwoWayIoU(ClusterMerger& merger, const ClusterMaskCounts& counts);

/// Upper bound: the best IoU of any union of final clusters that leaves at least one cluster out
/// (every 2-way merge's better segment is such a union). Exact: all subsets are enumerated up to
/// 20 clusters; beyond that, the unions of the purest clusters first, which hold the optimum of an
/// IoU over unions (a ratio maximised by thresholding each cluster's purity).
double bestTwoWayIoU(const ClusterMaskCounts& counts);

/// The whole image as the segment: |mask| / pixels.
double wholeImageIoU(const ClusterMaskCounts& counts);

}  // namespace fec::imaging
