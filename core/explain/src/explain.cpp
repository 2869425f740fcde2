#include "fec/explain/explain.h"

#include <chrono>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

namespace fec::explain {

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Engine messages usually start with the file; add the image when they do not.
std::string withImage(const std::string& message, const std::string& path)
{
    if (message.find(path) != std::string::npos)
        return message;
    return path + ": " + message;
}

}  // namespace

Explanation explainImage(FecModelImpl& model, const CheckpointInfo& info, const c10::Device& device,
                         const std::string& imagePath, const ExplainOptions& options, const CancelCheck& cancel)
{
    const auto check = [&cancel] {
        if (cancel)
            cancel();
    };
    Explanation e;
    // Everything that can fail for a reason of the image's own says which image.
    try {
        e.image = imaging::loadImageRgb(imagePath);
        e.size = inputSizeFor(info, options.size);
        info.inferred.config.checkInputSize(e.size, e.size);
        e.preprocess = imaging::parsePreprocess(preprocessFor(info, options.preprocess));
        e.prepared = imaging::prepareImage(e.image, e.size, e.preprocess);
    } catch (const c10::Error& err) {
        throw std::runtime_error(withImage(err.what_without_backtrace(), imagePath));
    } catch (const std::exception& err) {
        throw std::runtime_error(withImage(err.what(), imagePath));
    }
    check();

    // Inference tensors of the trace stay read-only afterwards; analysis runs under the same mode.
    c10::InferenceMode guard;
    auto start = Clock::now();
    TraceOptions trace;
    trace.pools = true;
    trace.blocks = options.blocks;
    e.trace = model.forwardTraced(e.prepared.tensor.unsqueeze(0).to(device), trace);
    e.inferenceMs = msSince(start);
    check();

    start = Clock::now();
    e.pyramid = buildPyramid(e.trace, 0);
    check();
    if (options.blocks) {
        e.partitions = encodingPartitions(e.trace, 0);
        check();
    }
    try {
        e.merger = std::make_shared<imaging::ClusterMerger>(e.pyramid, options.features);
    } catch (const std::invalid_argument&) {
        e.merger.reset();  // no features on the last pool: K-means is unavailable
    }
    if (e.trace.logits.defined() && info.inferred.config.numClasses > 0) {
        e.top = topClasses(e.trace.logits[0], options.topK);
        if (e.trace.finalMap.defined())
            e.evidence = computeEvidence(model, e.trace.finalMap);
    }
    e.analysisMs = msSince(start);
    return e;
}

std::string levelCaption(const SegmentPyramid& pyramid, int level)
{
    const auto& lv = pyramid.levels.at(static_cast<size_t>(level - 1));
    std::string caption = "Level " + std::to_string(level) + " · " + std::to_string(lv.nonEmpty.size()) + " clusters";
    if (lv.emptyCount() > 0)
        caption += " (" + std::to_string(lv.emptyCount()) + " empty)";
    return caption;
}

Segmentation levelSegmentation(const SegmentPyramid& pyramid, int level, LabelGrid grid)
{
    if (level < 1 || level > pyramid.levelCount())
        throw std::invalid_argument("level " + std::to_string(level) + " does not exist: the model has levels 1 to " +
                                    std::to_string(pyramid.levelCount()));
    Segmentation s;
    s.labels = grid == LabelGrid::Pixels ? pyramid.pixelLabels(level) : pyramid.blockLabels(level);
    s.caption = levelCaption(pyramid, level);
    return s;
}

Segmentation kmeansSegmentation(imaging::ClusterMerger& merger, int k, LabelGrid grid)
{
    if (k < 2 || k > merger.maxK())
        throw std::invalid_argument("k = " + std::to_string(k) + " is out of range: k must be between 2 and " +
                                    std::to_string(merger.maxK()) + " (the last level's non-empty clusters)");
    const auto& merge = merger.merge(k);
    Segmentation s;
    s.labels = grid == LabelGrid::Pixels ? merger.pixelLabels(merge) : merger.blockLabels(merge);
    s.colourOf = &merge.colourOfGroup;
    s.caption = "K-means k = " + std::to_string(k);
    return s;
}

}  // namespace fec::explain
