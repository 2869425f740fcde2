#include "fec/ui/highlight.h"

#include <algorithm>
#include <unordered_map>

#include <ATen/ATen.h>

namespace fec::ui {

namespace {

// Adds merged horizontal and vertical edge runs where `edge(cellA, cellB)` holds.
template <typename EdgeH, typename EdgeV> QPainterPath edgesPath(int w, int h, EdgeH horizontalEdge, EdgeV verticalEdge)
{
    QPainterPath path;
    // Horizontal edges lie on grid line y between rows y - 1 and y.
    for (int y = 0; y <= h; ++y) {
        int start = -1;
        for (int x = 0; x <= w; ++x) {
            const bool on = x < w && horizontalEdge(x, y);
            if (on && start < 0)
                start = x;
            if (!on && start >= 0) {
                path.moveTo(start, y);
                path.lineTo(x, y);
                start = -1;
            }
        }
    }
    // Vertical edges lie on grid line x between columns x - 1 and x.
    for (int x = 0; x <= w; ++x) {
        int start = -1;
        for (int y = 0; y <= h; ++y) {
            const bool on = y < h && verticalEdge(x, y);
            if (on && start < 0)
                start = y;
            if (!on && start >= 0) {
                path.moveTo(x, start);
                path.lineTo(x, y);
                start = -1;
            }
        }
    }
    return path;
}

}  // namespace

QPainterPath maskOutline(const std::vector<uint8_t>& mask, int w, int h)
{
    if (mask.size() != static_cast<size_t>(w) * h)
        return {};
    const auto in = [&](int x, int y) { return x >= 0 && y >= 0 && x < w && y < h && mask[size_t(y) * w + x] != 0; };
    return edgesPath(
        w, h, [&](int x, int y) { return in(x, y - 1) != in(x, y); },
        [&](int x, int y) { return in(x - 1, y) != in(x, y); });
}

QPainterPath labelBoundaries(const int32_t* labels, const std::vector<uint8_t>& mask, int w, int h)
{
    if (!labels || mask.size() != static_cast<size_t>(w) * h)
        return {};
    const auto at = [&](int x, int y) { return size_t(y) * w + x; };
    return edgesPath(
        w, h,
        [&](int x, int y) {
            return y > 0 && y < h && mask[at(x, y - 1)] && mask[at(x, y)] && labels[at(x, y - 1)] != labels[at(x, y)];
        },
        [&](int x, int y) {
            return x > 0 && x < w && mask[at(x - 1, y)] && mask[at(x, y)] && labels[at(x - 1, y)] != labels[at(x, y)];
        });
}

ViewHighlight makeHighlight(const SegmentPyramid& pyramid, int selectedNode, int hoveredNode)
{
    ViewHighlight h;
    h.blockW = static_cast<int>(pyramid.blockW);
    h.blockH = static_cast<int>(pyramid.blockH);
    h.blockSize = pyramid.blockSize;
    const int nodeCount = static_cast<int>(pyramid.nodes.size());
    if (selectedNode >= 0 && selectedNode < nodeCount) {
        h.selectedMask = pyramid.blockMask(selectedNode);
        h.selectedOutline = maskOutline(h.selectedMask, h.blockW, h.blockH);
        const auto& node = pyramid.nodes[selectedNode];
        if (node.level > 1)
            h.descendantOutline =
                labelBoundaries(pyramid.levels[node.level - 2].blockLabel.data(), h.selectedMask, h.blockW, h.blockH);
        for (int parent = node.parent; parent >= 0 && parent < nodeCount; parent = pyramid.nodes[parent].parent)
            h.ancestorOutlines.push_back(maskOutline(pyramid.blockMask(parent), h.blockW, h.blockH));
    }
    if (hoveredNode >= 0 && hoveredNode < nodeCount && hoveredNode != selectedNode)
        h.hoveredOutline = maskOutline(pyramid.blockMask(hoveredNode), h.blockW, h.blockH);
    return h;
}

PixelMapping pixelMappingOf(const imaging::InputMapping& mapping)
{
    PixelMapping m;
    m.scaleX = mapping.scaleX;
    m.scaleY = mapping.scaleY;
    m.offsetX = mapping.offsetX;
    m.offsetY = mapping.offsetY;
    m.inputSize = mapping.inputSize;
    return m;
}

int nodeAt(const SegmentPyramid& pyramid, int level, QPoint pixel)
{
    if (level < 1 || level > pyramid.levelCount() || pixel.x() < 0 || pixel.y() < 0 || pixel.x() >= pyramid.inputW ||
        pixel.y() >= pyramid.inputH)
        return -1;
    return pyramid.nodeOf(level, pyramid.clusterAt(level, pixel.x(), pixel.y()));
}

at::Tensor segmentDifference(const at::Tensor& a, const at::Tensor& b, double* changedFraction)
{
    TORCH_CHECK(a.dim() == 2 && a.sizes() == b.sizes(), "segmentDifference: label maps must have the same 2-D size");
    const auto la = a.to(at::kInt).contiguous();
    const auto lb = b.to(at::kInt).contiguous();
    const int32_t* pa = la.data_ptr<int32_t>();
    const int32_t* pb = lb.data_ptr<int32_t>();
    const int64_t n = la.numel();
    // Overlap counts per (label of a, label of b); keep the best partner of each a label.
    std::unordered_map<int64_t, int64_t> overlap;
    overlap.reserve(1024);
    for (int64_t i = 0; i < n; ++i)
        if (pa[i] >= 0 && pb[i] >= 0)
            ++overlap[(int64_t(pa[i]) << 32) | uint32_t(pb[i])];
    std::unordered_map<int32_t, std::pair<int32_t, int64_t>> best;
    for (const auto& [key, count] : overlap) {
        const auto la32 = static_cast<int32_t>(key >> 32);
        const auto lb32 = static_cast<int32_t>(key & 0xffffffff);
        auto it = best.find(la32);
        if (it == best.end() || count > it->second.second || (count == it->second.second && lb32 < it->second.first))
            best[la32] = {lb32, count};
    }
    auto changed = at::zeros(la.sizes(), at::kBool);
    bool* pc = changed.data_ptr<bool>();
    int64_t marked = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (pa[i] < 0 || pb[i] < 0)
            continue;
        const auto it = best.find(pa[i]);
        if (it != best.end() && it->second.first != pb[i]) {
            pc[i] = true;
            ++marked;
        }
    }
    if (changedFraction)
        *changedFraction = n ? double(marked) / double(n) : 0.0;
    return changed;
}

QImage differenceLayer(const at::Tensor& changed)
{
    const auto c = changed.to(at::kBool).contiguous();
    const int h = static_cast<int>(c.size(0)), w = static_cast<int>(c.size(1));
    QImage layer(w, h, QImage::Format_ARGB32_Premultiplied);
    const bool* p = c.data_ptr<bool>();
    const QRgb mark = qPremultiply(qRgba(255, 0, 200, 200));
    const QRgb dim = qPremultiply(qRgba(0, 0, 0, 110));
    for (int y = 0; y < h; ++y) {
        auto* row = reinterpret_cast<QRgb*>(layer.scanLine(y));
        for (int x = 0; x < w; ++x)
            row[x] = p[size_t(y) * w + x] ? mark : dim;
    }
    return layer;
}

at::Tensor resizeLabels(const at::Tensor& labels, int size)
{
    const auto l = labels.to(at::kInt).contiguous();
    const int64_t h = l.size(0), w = l.size(1);
    if (h == size && w == size)
        return l;
    auto out = at::empty({size, size}, at::kInt);
    const int32_t* src = l.data_ptr<int32_t>();
    int32_t* dst = out.data_ptr<int32_t>();
    for (int y = 0; y < size; ++y) {
        const int64_t sy = std::min<int64_t>(h - 1, (int64_t(y) * h) / size);
        for (int x = 0; x < size; ++x)
            dst[size_t(y) * size + x] = src[sy * w + std::min<int64_t>(w - 1, (int64_t(x) * w) / size)];
    }
    return out;
}

}  // namespace fec::ui
