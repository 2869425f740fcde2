#include "fec/imaging/segmentation_score.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace fec::imaging {
namespace {

double iou(int64_t objectIn, int64_t pixelsIn, int64_t maskPixels)
{
    const auto unionPixels = pixelsIn + maskPixels - objectIn;
    return unionPixels > 0 ? static_cast<double>(objectIn) / static_cast<double>(unionPixels) : 0.0;
}

}  // namespace

ClusterMaskCounts countClusterMask(const SegmentPyramid& pyramid, const std::vector<uint8_t>& mask)
{
    if (pyramid.levels.empty())
        throw std::invalid_argument("segmentation score: the pyramid has no levels");
    const auto h = pyramid.inputH, w = pyramid.inputW;
    if (static_cast<int64_t>(mask.size()) != h * w)
        throw std::invalid_argument("segmentation score: mask has " + std::to_string(mask.size()) +
                                    " pixels, the model input " + std::to_string(h * w));
    const auto clusters = pyramid.levels.back().nonEmpty.size();
    ClusterMaskCounts c;
    c.pixels.assign(clusters, 0);
    c.objectPixels.assign(clusters, 0);
    c.totalPixels = h * w;
    auto labels = pyramid.pixelLabels(pyramid.levelCount()).contiguous();
    const auto* label = labels.data_ptr<int32_t>();
    for (int64_t i = 0; i < h * w; ++i) {
        const auto j = static_cast<size_t>(label[i]);
        const bool object = mask[static_cast<size_t>(i)] != 0;
        ++c.pixels[j];
        c.objectPixels[j] += object;
        c.maskPixels += object;
    }
    return c;
}

double groupIoU(const ClusterMaskCounts& counts, const std::vector<int>& groupOfCluster, int group)
{
    if (groupOfCluster.size() != counts.pixels.size())
        throw std::invalid_argument("segmentation score: grouping and clusters differ in size");
    int64_t in = 0, objectIn = 0;
    for (size_t j = 0; j < groupOfCluster.size(); ++j) {
        if (groupOfCluster[j] == group) {
            in += counts.pixels[j];
            objectIn += counts.objectPixels[j];
        }
    }
    return iou(objectIn, in, counts.maskPixels);
}

double kmeansTwoWayIoU(ClusterMerger& merger, const ClusterMaskCounts& counts)
{
    if (merger.maxK() < 2)
        return wholeImageIoU(counts);
    const auto& merge = merger.merge(2);
    return std::max(groupIoU(counts, merge.groupOfCluster, 0), groupIoU(counts, merge.groupOfCluster, 1));
}

double bestTwoWayIoU(const ClusterMaskCounts& counts)
{
    const auto k = counts.pixels.size();
    if (k < 2)
        return wholeImageIoU(counts);
    double best = 0;
    if (k <= 20) {
        // Gray code: each step adds or removes one cluster; subsets 1 .. 2^k - 2 (proper, non-empty).
        int64_t in = 0, objectIn = 0;
        uint32_t previous = 0;
        const uint32_t last = (1u << k) - 1;
        for (uint32_t i = 1; i <= last; ++i) {
            const uint32_t gray = i ^ (i >> 1);
            const uint32_t changed = gray ^ previous;
            const auto j = static_cast<size_t>(__builtin_ctz(changed));
            const int64_t sign = (gray & changed) ? 1 : -1;
            in += sign * counts.pixels[j];
            objectIn += sign * counts.objectPixels[j];
            previous = gray;
            if (gray != last)
                best = std::max(best, iou(objectIn, in, counts.maskPixels));
        }
        return best;
    }
    std::vector<size_t> order(k);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {  // purity, descending
        return counts.objectPixels[a] * counts.pixels[b] > counts.objectPixels[b] * counts.pixels[a];
    });
    int64_t in = 0, objectIn = 0;
    for (size_t i = 0; i + 1 < k; ++i) {
        in += counts.pixels[order[i]];
        objectIn += counts.objectPixels[order[i]];
        best = std::max(best, iou(objectIn, in, counts.maskPixels));
    }
    return best;
}

double wholeImageIoU(const ClusterMaskCounts& counts)
{
    return iou(counts.maskPixels, counts.totalPixels, counts.maskPixels);
}

}  // namespace fec::imaging
