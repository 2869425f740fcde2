#pragma once

// Interpretability analysis of one traced image: the segment pyramid (paper Eq. 8), its linked
// hierarchy, pixel lineage with assignment confidence, and encoding-block partitions.
// LibTorch + std only; K-means merges and drawing live in the imaging layer.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/model.h"

namespace fec {

/// One level of the pyramid: which cluster every pixel block belongs to.
struct PyramidLevel {
    int level = 0;                    ///< 1 = first ClusterPool (finest), ..., L = last
    int64_t gridH = 0, gridW = 0;     ///< centre grid of this level (e.g. 28x28 for level 1 at 224)
    std::vector<int32_t> blockLabel;  ///< [blockH * blockW] raw centre id (row-major on the grid)
    std::vector<int32_t> nonEmpty;    ///< ascending raw ids that cover at least one block
    std::vector<int32_t> compact;     ///< [gridH * gridW] raw id -> index in nonEmpty, -1 if empty
    int emptyCount() const { return static_cast<int>(gridH * gridW - static_cast<int64_t>(nonEmpty.size())); }
};

/// A node of the linked hierarchy: a non-empty cluster of one level.
struct HierarchyNode {
    int id = 0;                          ///< index in SegmentPyramid::nodes
    int level = 0;                       ///< 1..L
    int32_t cluster = 0;                 ///< raw centre id on the level's grid
    int parent = -1;                     ///< node id at level + 1 (-1 at the top)
    std::vector<int> children;           ///< node ids at level - 1
    int64_t blocks = 0;                  ///< pixel blocks covered
    int64_t pixels = 0;                  ///< model-input pixels covered (blocks * blockSize^2)
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  ///< bounding box in model-input pixels, [x0, x1) x [y0, y1)
    double cx = 0, cy = 0;               ///< centroid in model-input pixels
    int gridRow = 0, gridCol = 0;        ///< the centre's position on its grid
};

/// The segment pyramid and hierarchy of one image of a traced batch.
struct SegmentPyramid {
    int64_t inputH = 0, inputW = 0;  ///< model input size in pixels
    int64_t blockH = 0, blockW = 0;  ///< pixel-block grid (inputH / 4)
    int blockSize = 4;
    std::vector<PyramidLevel> levels;          ///< level 1..L at index 0..L-1
    std::vector<HierarchyNode> nodes;          ///< all levels; see nodeOf()
    std::vector<std::vector<int>> levelNodes;  ///< node ids per level, in nonEmpty order
    at::Tensor keyCentres[3];                  ///< per pool: [M, C] key centres (Kc) of this image
    at::Tensor representatives[3];             ///< per pool: [M, C] representatives (R)
    /// Per level: for each block, the similarity and margin of the assignment that put the
    /// block's level-(l-1) cluster into its level-l cluster: [blockH * blockW] each.
    std::vector<std::vector<float>> similarity, margin;

    int levelCount() const { return static_cast<int>(levels.size()); }
    /// Node of a raw cluster id at a level (-1 if empty or out of range).
    int nodeOf(int level, int32_t cluster) const;
    /// Label map [blockH, blockW] (int32) of a level: compact labels (index in nonEmpty).
    at::Tensor blockLabels(int level) const;
    /// Label map [inputH, inputW] (int32) of a level at model-input resolution (compact labels).
    at::Tensor pixelLabels(int level) const;
    /// All levels at model-input resolution: [L, inputH, inputW] int32 (compact labels).
    at::Tensor allPixelLabels() const;
    /// Raw cluster id of a model-input pixel at a level.
    int32_t clusterAt(int level, int x, int y) const;
    /// Node ids of a node's descendants at `level` (< node level), or the node itself.
    std::vector<int> descendantsAt(int node, int level) const;
    /// Ancestors of a pixel: node id at each level 1..L.
    std::vector<int> ancestorsOfPixel(int x, int y) const;
    /// Block mask [blockH * blockW] of everything under a node.
    std::vector<uint8_t> blockMask(int node) const;
};

/// Builds the pyramid of image `index` of a traced batch (pools must be traced).
/// Throws std::invalid_argument when the trace has no pool assignments.
SegmentPyramid buildPyramid(const Trace& trace, int index = 0);

/// What a pixel went through.
struct LineageStep {
    int level = 0;
    int32_t cluster = 0;  ///< raw id on the level's grid
    int node = -1;
    float similarity = 0;  ///< cosine of the assignment into this cluster
    float margin = 0;      ///< to the runner-up centre
};
struct Lineage {
    int x = 0, y = 0;  ///< model-input pixel
    int blockRow = 0, blockCol = 0;
    std::vector<LineageStep> steps;  ///< level 1..L
};
Lineage lineageOf(const SegmentPyramid& pyramid, int x, int y);

/// Per-level confidence map at block resolution: [L, blockH, blockW] float (margins).
at::Tensor confidenceMaps(const SegmentPyramid& pyramid);

/// One encoding block's per-head partitions of its stage grid.
struct EncodingPartition {
    int stage = 0, block = 0, heads = 0;
    int64_t gridH = 0, gridW = 0;  ///< stage grid (56x56 at 224 for stage 0)
    int stride = 4;                ///< model-input pixels per grid cell
    int centres = 0;               ///< centres per head (proposals x folds)
    at::Tensor assign;             ///< [heads, gridH * gridW] int64
    at::Tensor agreement;          ///< [heads, heads] adjusted Rand index between heads
};
std::vector<EncodingPartition> encodingPartitions(const Trace& trace, int index = 0);

/// Adjusted Rand index of two labelings of the same items (1 = identical partitions).
double adjustedRandIndex(const int64_t* a, const int64_t* b, int64_t n);

/// One class of a prediction.
struct ClassScore {
    int64_t index = 0;
    double probability = 0;  ///< softmax probability in [0, 1]
};

/// The k most probable classes of one image's logits ([classes], any floating dtype, any
/// device), by softmax in float32, most probable first; k is clamped to the number of classes.
/// Returns none when any logit is NaN or infinite: such outputs are never ranked.
std::vector<ClassScore> topClasses(const at::Tensor& logits, int k);

/// Hierarchy as JSON (nodes with level, cluster, parent, children, sizes, boxes, centroids).
std::string hierarchyJson(const SegmentPyramid& pyramid);

}  // namespace fec
