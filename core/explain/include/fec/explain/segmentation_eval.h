#pragma once

// `fec eval --segmentation-iou`: does segmentation emerge from classification training?

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/model.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"

namespace fec::explain {

/// Mean IoUs of one model over a dataset.
struct SegmentationRow {
    double keyCentres = 0;       ///< K-means (k = 2) on the last pool's key centres
    double representatives = 0;  ///< K-means (k = 2) on its representatives
    double upperBound = 0;       ///< best possible 2-way merge of the final clusters
    double meanClusters = 0;     ///< non-empty final clusters per image
};

struct SegmentationReport {
    int64_t images = 0;
    int size = 0;
    SegmentationRow trained, untrained;
    double wholeImage = 0;  ///< the whole image as the segment (baseline)
    double top1 = 0;        ///< the trained model's top-1 on the same images, percent
};

/// Object mask of a sample at model resolution: the source pixel under the centre of each input
/// pixel is > 0 in any channel. `image` is [H, W, C] uint8 or float; `size` the model input side.
std::vector<uint8_t> objectMask(const at::Tensor& image, int size, train::EvalResize resize);

/// Runs both models (traced, no gradients) over `data` in batches and averages the scores.
/// `progress(done, total)` is called after every batch.
SegmentationReport segmentationScores(FecModelImpl& trained, FecModelImpl& untrained, const train::Dataset& data,
                                      int size, train::EvalResize resize, int batch,
                                      const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace fec::explain
