#include "fec/analysis.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace fec {

namespace {

std::vector<int64_t> toLongVector(const at::Tensor& t)
{
    auto c = t.to(at::kLong).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<float> toFloatVector(const at::Tensor& t)
{
    auto c = t.to(at::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

SegmentPyramid buildPyramid(const Trace& trace, int index)
{
    if (trace.pools.empty())
        throw std::invalid_argument("the trace has no ClusterPool assignments");
    const auto& first = trace.pools.front();
    if (index < 0 || index >= first.assign.size(0))
        throw std::invalid_argument("image index out of range");

    SegmentPyramid p;
    p.blockH = first.inH;
    p.blockW = first.inW;
    p.inputH = p.blockH * p.blockSize;
    p.inputW = p.blockW * p.blockSize;
    const int64_t blocks = p.blockH * p.blockW;

    // Eq. 8: each block inherits the cluster its parent cluster was assigned to.
    std::vector<int32_t> current(blocks);
    for (int64_t i = 0; i < blocks; ++i)
        current[i] = static_cast<int32_t>(i);
    std::vector<int32_t> previous;
    for (size_t l = 0; l < trace.pools.size(); ++l) {
        const auto& pool = trace.pools[l];
        const auto assign = toLongVector(pool.assign[index]);
        const auto sim = toFloatVector(pool.similarity[index]);
        const auto margin = toFloatVector(pool.margin[index]);
        const int64_t inCount = pool.inH * pool.inW;
        if (static_cast<int64_t>(assign.size()) != inCount)
            throw std::invalid_argument("inconsistent pool trace");
        PyramidLevel level;
        level.level = static_cast<int>(l) + 1;
        level.gridH = pool.outH;
        level.gridW = pool.outW;
        level.blockLabel.resize(blocks);
        std::vector<float> blockSim(blocks), blockMargin(blocks);
        for (int64_t b = 0; b < blocks; ++b) {
            const int32_t in = current[b];  // the block's cluster at the previous level (or the block)
            level.blockLabel[b] = static_cast<int32_t>(assign[in]);
            blockSim[b] = sim[in];
            blockMargin[b] = margin[in];
        }
        const int64_t grid = level.gridH * level.gridW;
        std::vector<uint8_t> used(grid, 0);
        for (int32_t c : level.blockLabel)
            used[c] = 1;
        level.compact.assign(grid, -1);
        for (int64_t c = 0; c < grid; ++c) {
            if (used[c]) {
                level.compact[c] = static_cast<int32_t>(level.nonEmpty.size());
                level.nonEmpty.push_back(static_cast<int32_t>(c));
            }
        }
        current = level.blockLabel;
        p.similarity.push_back(std::move(blockSim));
        p.margin.push_back(std::move(blockMargin));
        p.levels.push_back(std::move(level));
        if (l < 3) {
            p.keyCentres[l] = pool.keyCentres[index];
            p.representatives[l] = pool.representatives[index];
        }
    }

    // Nodes with sizes, boxes and centroids.
    const int levelsCount = p.levelCount();
    p.levelNodes.resize(levelsCount);
    for (int l = 0; l < levelsCount; ++l) {
        const auto& level = p.levels[l];
        for (int32_t c : level.nonEmpty) {
            HierarchyNode node;
            node.id = static_cast<int>(p.nodes.size());
            node.level = l + 1;
            node.cluster = c;
            node.gridRow = static_cast<int>(c / level.gridW);
            node.gridCol = static_cast<int>(c % level.gridW);
            node.x0 = static_cast<int>(p.inputW);
            node.y0 = static_cast<int>(p.inputH);
            p.levelNodes[l].push_back(node.id);
            p.nodes.push_back(node);
        }
        std::vector<double> sx(level.nonEmpty.size()), sy(level.nonEmpty.size());
        for (int64_t b = 0; b < blocks; ++b) {
            auto& node = p.nodes[p.levelNodes[l][level.compact[level.blockLabel[b]]]];
            const int row = static_cast<int>(b / p.blockW), col = static_cast<int>(b % p.blockW);
            node.blocks += 1;
            node.x0 = std::min(node.x0, col * p.blockSize);
            node.y0 = std::min(node.y0, row * p.blockSize);
            node.x1 = std::max(node.x1, (col + 1) * p.blockSize);
            node.y1 = std::max(node.y1, (row + 1) * p.blockSize);
            sx[level.compact[level.blockLabel[b]]] += (col + 0.5) * p.blockSize;
            sy[level.compact[level.blockLabel[b]]] += (row + 0.5) * p.blockSize;
        }
        for (size_t k = 0; k < level.nonEmpty.size(); ++k) {
            auto& node = p.nodes[p.levelNodes[l][k]];
            node.pixels = node.blocks * p.blockSize * p.blockSize;
            node.cx = sx[k] / static_cast<double>(node.blocks);
            node.cy = sy[k] / static_cast<double>(node.blocks);
        }
    }
    // Parents: the level-(l+1) cluster that a level-l cluster was assigned to.
    for (int l = 0; l + 1 < levelsCount; ++l) {
        const auto assign = toLongVector(trace.pools[l + 1].assign[index]);
        for (int id : p.levelNodes[l]) {
            auto& node = p.nodes[id];
            const int parent = p.nodeOf(l + 2, static_cast<int32_t>(assign[node.cluster]));
            node.parent = parent;
            if (parent >= 0)
                p.nodes[parent].children.push_back(id);
        }
    }
    return p;
}

int SegmentPyramid::nodeOf(int level, int32_t cluster) const
{
    if (level < 1 || level > levelCount())
        return -1;
    const auto& lv = levels[level - 1];
    if (cluster < 0 || cluster >= static_cast<int32_t>(lv.compact.size()) || lv.compact[cluster] < 0)
        return -1;
    return levelNodes[level - 1][lv.compact[cluster]];
}

at::Tensor SegmentPyramid::blockLabels(int level) const
{
    const auto& lv = levels.at(level - 1);
    auto out = at::empty({blockH, blockW}, at::kInt);
    auto* d = out.data_ptr<int32_t>();
    for (size_t b = 0; b < lv.blockLabel.size(); ++b)
        d[b] = lv.compact[lv.blockLabel[b]];
    return out;
}

at::Tensor SegmentPyramid::pixelLabels(int level) const
{
    return blockLabels(level).repeat_interleave(blockSize, 0).repeat_interleave(blockSize, 1).contiguous();
}

at::Tensor SegmentPyramid::allPixelLabels() const
{
    std::vector<at::Tensor> maps;
    for (int l = 1; l <= levelCount(); ++l)
        maps.push_back(pixelLabels(l));
    return at::stack(maps);
}

int32_t SegmentPyramid::clusterAt(int level, int x, int y) const
{
    const auto& lv = levels.at(level - 1);
    const int64_t row = std::clamp<int64_t>(y / blockSize, 0, blockH - 1);
    const int64_t col = std::clamp<int64_t>(x / blockSize, 0, blockW - 1);
    return lv.blockLabel[row * blockW + col];
}

std::vector<int> SegmentPyramid::descendantsAt(int node, int level) const
{
    std::vector<int> frontier{node};
    while (!frontier.empty() && nodes[frontier.front()].level > level) {
        std::vector<int> next;
        for (int id : frontier)
            next.insert(next.end(), nodes[id].children.begin(), nodes[id].children.end());
        frontier = std::move(next);
    }
    return frontier;
}

std::vector<int> SegmentPyramid::ancestorsOfPixel(int x, int y) const
{
    std::vector<int> out;
    for (int l = 1; l <= levelCount(); ++l)
        out.push_back(nodeOf(l, clusterAt(l, x, y)));
    return out;
}

std::vector<uint8_t> SegmentPyramid::blockMask(int node) const
{
    const auto& n = nodes.at(node);
    const auto& lv = levels[n.level - 1];
    std::vector<uint8_t> mask(lv.blockLabel.size());
    for (size_t b = 0; b < mask.size(); ++b)
        mask[b] = lv.blockLabel[b] == n.cluster;
    return mask;
}

Lineage lineageOf(const SegmentPyramid& p, int x, int y)
{
    Lineage out;
    out.x = x;
    out.y = y;
    out.blockRow = static_cast<int>(std::clamp<int64_t>(y / p.blockSize, 0, p.blockH - 1));
    out.blockCol = static_cast<int>(std::clamp<int64_t>(x / p.blockSize, 0, p.blockW - 1));
    const int64_t b = out.blockRow * p.blockW + out.blockCol;
    for (int l = 1; l <= p.levelCount(); ++l) {
        LineageStep step;
        step.level = l;
        step.cluster = p.levels[l - 1].blockLabel[b];
        step.node = p.nodeOf(l, step.cluster);
        step.similarity = p.similarity[l - 1][b];
        step.margin = p.margin[l - 1][b];
        out.steps.push_back(step);
    }
    return out;
}

at::Tensor confidenceMaps(const SegmentPyramid& p)
{
    auto out = at::empty({p.levelCount(), p.blockH, p.blockW}, at::kFloat);
    for (int l = 0; l < p.levelCount(); ++l)
        std::copy(p.margin[l].begin(), p.margin[l].end(), out[l].data_ptr<float>());
    return out;
}

double adjustedRandIndex(const int64_t* a, const int64_t* b, int64_t n)
{
    if (n < 2)
        return 1.0;
    std::map<std::pair<int64_t, int64_t>, int64_t> joint;
    std::map<int64_t, int64_t> rows, cols;
    for (int64_t i = 0; i < n; ++i) {
        ++joint[{a[i], b[i]}];
        ++rows[a[i]];
        ++cols[b[i]];
    }
    auto pairs = [](int64_t k) { return static_cast<double>(k) * (k - 1) / 2.0; };
    double index = 0, sumRows = 0, sumCols = 0;
    for (const auto& [k, v] : joint)
        index += pairs(v);
    for (const auto& [k, v] : rows)
        sumRows += pairs(v);
    for (const auto& [k, v] : cols)
        sumCols += pairs(v);
    const double expected = sumRows * sumCols / pairs(n);
    const double maximum = 0.5 * (sumRows + sumCols);
    if (maximum - expected == 0)
        return 1.0;  // both labelings are a single cluster (or all singletons): identical
    return (index - expected) / (maximum - expected);
}

std::vector<EncodingPartition> encodingPartitions(const Trace& trace, int index)
{
    std::vector<EncodingPartition> out;
    for (const auto& block : trace.blocks) {
        EncodingPartition part;
        part.stage = block.stage;
        part.block = block.block;
        part.heads = block.heads;
        part.gridH = block.height;
        part.gridW = block.width;
        part.stride = 4 << block.stage;
        part.centres = block.proposalW * block.proposalH * block.foldW * block.foldH;
        part.assign = block.assign[index].contiguous();
        part.agreement = at::ones({block.heads, block.heads}, at::kDouble);
        const auto n = part.assign.size(1);
        for (int i = 0; i < block.heads; ++i)
            for (int j = i + 1; j < block.heads; ++j) {
                const double ari =
                    adjustedRandIndex(part.assign[i].data_ptr<int64_t>(), part.assign[j].data_ptr<int64_t>(), n);
                part.agreement[i][j] = ari;
                part.agreement[j][i] = ari;
            }
        out.push_back(std::move(part));
    }
    return out;
}

std::string hierarchyJson(const SegmentPyramid& p)
{
    nlohmann::ordered_json j;
    j["input_size"] = {p.inputH, p.inputW};
    j["block_size"] = p.blockSize;
    j["levels"] = nlohmann::ordered_json::array();
    for (const auto& lv : p.levels)
        j["levels"].push_back({{"level", lv.level},
                               {"grid", {lv.gridH, lv.gridW}},
                               {"clusters", lv.gridH * lv.gridW},
                               {"non_empty", lv.nonEmpty.size()},
                               {"empty", lv.emptyCount()}});
    j["nodes"] = nlohmann::ordered_json::array();
    for (const auto& n : p.nodes) {
        const auto& lv = p.levels[n.level - 1];
        j["nodes"].push_back({{"id", n.id},
                              {"level", n.level},
                              {"cluster", n.cluster},
                              {"label", lv.compact[n.cluster]},
                              {"grid_position", {n.gridRow, n.gridCol}},
                              {"parent", n.parent},
                              {"children", n.children},
                              {"blocks", n.blocks},
                              {"pixels", n.pixels},
                              {"bbox", {n.x0, n.y0, n.x1, n.y1}},
                              {"centroid", {n.cx, n.cy}}});
    }
    return j.dump(1);
}

std::vector<ClassScore> topClasses(const at::Tensor& logits, int k)
{
    std::vector<ClassScore> out;
    if (!logits.defined() || logits.dim() != 1 || logits.size(0) == 0 || k <= 0)
        return out;
    const auto values32 = logits.detach().to(at::kCPU, at::kFloat);
    // NaN sorts above every number in topk: a model with non-finite outputs has no ranking.
    if (!at::isfinite(values32).all().item<bool>())
        return out;
    const auto probs = at::softmax(values32, 0);
    const auto top = probs.topk(std::min<int64_t>(k, probs.size(0)));
    const auto values = std::get<0>(top).contiguous();
    const auto indices = std::get<1>(top).contiguous();
    for (int64_t i = 0; i < values.size(0); ++i)
        out.push_back({indices[i].item<int64_t>(), values[i].item<double>()});
    return out;
}

}  // namespace fec
