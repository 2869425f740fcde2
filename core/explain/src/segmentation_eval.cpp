#include "fec/explain/segmentation_eval.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "fec/analysis.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/segmentation_score.h"

namespace fec::explain {

std::vector<uint8_t> objectMask(const at::Tensor& image, int size, train::EvalResize resize)
{
    TORCH_CHECK(image.dim() == 3, "objectMask: expected an [H, W, C] image, got ", image.sizes());
    const auto h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1));
    // Any channel above zero marks the object.
    auto object = image.to(at::kFloat).gt(0).any(2).to(at::kByte).contiguous();
    const auto* src = object.data_ptr<uint8_t>();
    const auto box = train::evalSourceBox(w, h, size, resize);
    const double sx = (box.x1 - box.x0) / size, sy = (box.y1 - box.y0) / size;
    std::vector<uint8_t> mask(static_cast<size_t>(size) * static_cast<size_t>(size));
    for (int y = 0; y < size; ++y) {
        const int row = std::clamp(static_cast<int>(std::floor(box.y0 + (y + 0.5) * sy)), 0, h - 1);
        for (int x = 0; x < size; ++x) {
            const int col = std::clamp(static_cast<int>(std::floor(box.x0 + (x + 0.5) * sx)), 0, w - 1);
            mask[static_cast<size_t>(y) * size + x] = src[static_cast<size_t>(row) * w + col];
        }
    }
    return mask;
}

SegmentationReport segmentationScores(FecModelImpl& trained, FecModelImpl& untrained, const train::Dataset& data,
                                      int size, train::EvalResize resize, int batch,
                                      const std::function<void(int64_t, int64_t)>& progress)
{
    trained.eval();
    untrained.eval();
    c10::InferenceMode inference;
    TraceOptions traceOptions;
    traceOptions.blocks = false;  // the pyramid needs the pools only

    SegmentationReport r;
    r.size = size;
    const auto total = data.size();
    double correct = 0;
    auto score = [&](FecModelImpl& model, const at::Tensor& input, const std::vector<std::vector<uint8_t>>& masks,
                     SegmentationRow& row, const std::vector<int64_t>* labels) {
        const auto device = model.parameters().front().device();
        auto trace = model.forwardTraced(input.to(device), traceOptions);
        for (size_t j = 0; j < masks.size(); ++j) {
            const auto pyramid = buildPyramid(trace, static_cast<int>(j));
            const auto counts = imaging::countClusterMask(pyramid, masks[j]);
            imaging::ClusterMerger byKeys(pyramid, imaging::MergeFeatures::KeyCentres);
            imaging::ClusterMerger byReps(pyramid, imaging::MergeFeatures::Representatives);
            row.keyCentres += imaging::kmeansTwoWayIoU(byKeys, counts);
            row.representatives += imaging::kmeansTwoWayIoU(byReps, counts);
            row.upperBound += imaging::bestTwoWayIoU(counts);
            row.meanClusters += static_cast<double>(counts.pixels.size());
            if (labels) {
                r.wholeImage += imaging::wholeImageIoU(counts);
                if (trace.logits.defined())
                    correct += trace.logits[static_cast<int64_t>(j)].argmax().item<int64_t>() == (*labels)[j];
            }
        }
    };
    for (int64_t start = 0; start < total; start += batch) {
        const auto end = std::min<int64_t>(total, start + batch);
        std::vector<at::Tensor> inputs;
        std::vector<std::vector<uint8_t>> masks;
        std::vector<int64_t> labels;
        for (int64_t i = start; i < end; ++i) {
            const auto sample = data.get(i);
            inputs.push_back(train::evalTransform(sample.image, size, resize));
            masks.push_back(objectMask(sample.image, size, resize));
            labels.push_back(sample.label);
        }
        const auto input = at::stack(inputs);
        score(trained, input, masks, r.trained, &labels);
        score(untrained, input, masks, r.untrained, nullptr);
        if (progress)
            progress(end, total);
    }
    r.images = total;
    if (total > 0) {
        const auto n = static_cast<double>(total);
        for (auto* row : {&r.trained, &r.untrained}) {
            row->keyCentres /= n;
            row->representatives /= n;
            row->upperBound /= n;
            row->meanClusters /= n;
        }
        r.wholeImage /= n;
        r.top1 = 100.0 * correct / n;
    }
    return r;
}

}  // namespace fec::explain
