#pragma once

// Turning the linked selection and label maps into what the image views draw: outlines on the
// block grid, difference layers between two label maps, mappings and lookups.

#include <vector>

#include <ATen/Tensor.h>

#include <QImage>
#include <QPainterPath>
#include <QPoint>

#include "fec/analysis.h"
#include "fec/imaging/image.h"
#include "fec/ui/image_view.h"

namespace fec::ui {

/// Boundary of the non-zero cells of a w x h mask, in cell units (one path, many segments).
QPainterPath maskOutline(const std::vector<uint8_t>& mask, int w, int h);
/// Edges between cells with different labels where both cells are inside `mask`, in cell units.
QPainterPath labelBoundaries(const int32_t* labels, const std::vector<uint8_t>& mask, int w, int h);

/// The selected node (its region, its children's boundaries, its ancestors' outlines) and the
/// hovered node's outline. Either may be -1.
ViewHighlight makeHighlight(const SegmentPyramid& pyramid, int selectedNode, int hoveredNode);

PixelMapping pixelMappingOf(const imaging::InputMapping& mapping);

/// Node of a level under a model-input pixel (-1 outside or empty).
int nodeAt(const SegmentPyramid& pyramid, int level, QPoint pixel);

/// Matches every segment of `a` to the segment of `b` it overlaps most and marks the pixels whose
/// matched label differs from b's. `a` and `b`: [S, S] int32 (negative = unlabelled, ignored).
/// Returns a boolean [S, S] tensor (kBool); `changedFraction` gets the share of marked pixels.
at::Tensor segmentDifference(const at::Tensor& a, const at::Tensor& b, double* changedFraction = nullptr);
/// A translucent layer (S x S, ARGB) that paints `changed` pixels magenta and dims the rest.
QImage differenceLayer(const at::Tensor& changed);

/// Nearest-neighbour resize of an [h, w] int32 label map to [size, size].
at::Tensor resizeLabels(const at::Tensor& labels, int size);

}  // namespace fec::ui
