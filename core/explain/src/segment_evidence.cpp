#include "fec/explain/segment_evidence.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "fec/imaging/render.h"

namespace fec::explain {

namespace {

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

}  // namespace

int64_t parseClass(const std::string& text, const std::vector<std::string>& names)
{
    const auto count = static_cast<int64_t>(names.size());
    for (int64_t i = 0; i < count; ++i)
        if (names[static_cast<size_t>(i)] == text)
            return i;
    for (int64_t i = 0; i < count; ++i)
        if (lower(names[static_cast<size_t>(i)]) == lower(text))
            return i;
    if (!text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
        if (text.size() <= 9) {
            const int64_t index = std::stoll(text);
            if (index < count)
                return index;
        }
        throw std::invalid_argument("class index " + text + " is out of range: the model has classes 0 to " +
                                    std::to_string(count - 1));
    }
    std::string list;
    for (int64_t i = 0; i < std::min<int64_t>(count, 40); ++i)
        list += (i ? ", " : "") + names[static_cast<size_t>(i)];
    if (count > 40)
        list +=
            ", ... (" + std::to_string(count) + " classes; an index 0 to " + std::to_string(count - 1) + " works too)";
    throw std::invalid_argument("no class named '" + text + "'; the model's classes are: " + list);
}

EvidenceReport exactSegmentEvidence(const Explanation& e, int64_t target, int64_t versus)
{
    if (!e.evidence.contributions.defined())
        throw NoClassifierError();
    EvidenceReport r;
    const auto& pyramid = e.pyramid;
    r.maps = evidenceMaps(e.evidence, pyramid, target, versus, 0);

    const auto& m = e.prepared.mapping;
    r.densityAtImage = imaging::mapToImage(r.maps.density, m, 0.f) / (m.scaleX * m.scaleY);

    // Lower levels: the density summed over each segment's pixels, from the block grid.
    const int64_t blockPixels = static_cast<int64_t>(pyramid.blockSize) * pyramid.blockSize;
    const auto& last = pyramid.levels.back();
    for (int level = 1; level <= pyramid.levelCount(); ++level) {
        const auto& lv = pyramid.levels[static_cast<size_t>(level - 1)];
        std::vector<double> located(lv.nonEmpty.size(), 0.0);
        for (size_t b = 0; b < lv.blockLabel.size(); ++b) {
            const int32_t c = lv.compact[static_cast<size_t>(lv.blockLabel[b])];
            const auto j = static_cast<size_t>(last.blockLabel[b]);
            located[static_cast<size_t>(c)] += r.maps.segment[j] / static_cast<double>(r.maps.pixels[j]) * blockPixels;
        }
        for (size_t i = 0; i < lv.nonEmpty.size(); ++i) {
            SegmentEvidence s;
            s.level = level;
            s.segment = lv.nonEmpty[i];
            s.node = pyramid.nodeOf(level, s.segment);
            if (s.node >= 0) {
                const auto& node = pyramid.nodes[static_cast<size_t>(s.node)];
                s.pixels = node.pixels;
                s.x0 = node.x0;
                s.y0 = node.y0;
                s.x1 = node.x1;
                s.y1 = node.y1;
            }
            s.contribution =
                level == pyramid.levelCount() ? r.maps.segment[static_cast<size_t>(s.segment)] : located[i];
            r.segments.push_back(s);
        }
    }
    return r;
}

EvidenceReport segmentEvidence(FecModelImpl& model, const c10::Device& device, const Explanation& e,
                               const EvidenceOptions& options, const CancelCheck& cancel)
{
    auto r = exactSegmentEvidence(e, options.target, options.versus);
    if (!options.ablation)
        return r;

    // Effects of every segment of every level: one ablator per level, all segments batched.
    const auto& pyramid = e.pyramid;
    const auto input = e.prepared.tensor.unsqueeze(0).to(device);
    if (options.effectsCache && options.effectsCache->size() < static_cast<size_t>(pyramid.levelCount()))
        options.effectsCache->resize(static_cast<size_t>(pyramid.levelCount()));
    size_t row = 0;  // r.segments is level by level, in each level's nonEmpty order
    for (int level = 1; level <= pyramid.levelCount(); ++level) {
        if (cancel)
            cancel();
        at::Tensor all;
        if (options.effectsCache && (*options.effectsCache)[static_cast<size_t>(level - 1)].defined()) {
            all = (*options.effectsCache)[static_cast<size_t>(level - 1)];
        } else {
            auto ablation = options.ablationOptions;
            if (ablation.baseline == AblationBaseline::Dataset &&
                static_cast<size_t>(level) <= options.datasetMeans.size())
                ablation.datasetMean = options.datasetMeans[static_cast<size_t>(level - 1)];
            SegmentAblator ablator(model, input, level, pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty,
                                   ablation);
            all = ablator.singleEffects(cancel);
            if (options.effectsCache)
                (*options.effectsCache)[static_cast<size_t>(level - 1)] = all;
        }
        auto effect = all.select(1, options.target);
        if (options.versus >= 0)
            effect = effect - all.select(1, options.versus);
        effect = effect.to(at::kDouble).contiguous();
        const auto* v = effect.data_ptr<double>();
        for (int64_t i = 0; i < effect.numel(); ++i)
            r.segments[row++].effect = v[i];
    }
    return r;
}

std::string segmentsCsv(const EvidenceReport& report)
{
    std::ostringstream out;
    out << "level,segment,pixels,x0,y0,x1,y1,contribution,ablation_effect\n";
    out << std::setprecision(9);
    for (const auto& s : report.segments) {
        out << s.level << ',' << s.segment << ',' << s.pixels << ',' << s.x0 << ',' << s.y0 << ',' << s.x1 << ','
            << s.y1 << ',' << s.contribution << ',';
        if (!std::isnan(s.effect))
            out << s.effect;
        out << '\n';
    }
    return out.str();
}

}  // namespace fec::explain
