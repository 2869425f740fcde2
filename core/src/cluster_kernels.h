#pragma once

// CPU inference kernels of the clustering steps (internal to fec_core).
//
// At batch 1 on a few cores the generic ATen path of a Cluster block or pool spends most of its
// time in overheads, not arithmetic: OpenBLAS's batched product of keys [n, d] with 4-16 centres
// ran at 5 GFLOP/s, index_add_ walks its rows one tensor op at a time, and gather + permute copy
// every dispatched row twice. These kernels do the same arithmetic, sums in the same order, with
// one oneDNN grouped 1x1 convolution for the products and plain loops for sums and dispatch. They apply to float32 CPU
// tensors when no autograd graph is recorded (useClusterKernels); model.cpp keeps the ATen path for everything else
// (CUDA, training, gradients), and the tests compare the two.

#include <utility>

#include <ATen/ATen.h>

namespace fec::detail {

/// True when the kernels below apply to activations like `x`: float32 on the CPU, oneDNN
/// available, gradient recording off, and the kernels not switched off (setClusterKernelsEnabled).
bool useClusterKernels(const at::Tensor& x);
/// Switches the kernels off (tests compare them with the ATen path). Process-wide; default on,
/// unless the environment sets FEC_CLUSTER_KERNELS=0 (A/B benchmarks of one binary).
void setClusterKernelsEnabled(bool enabled);

/// Dot product of every key with every centre of its own group, by one grouped 1x1 convolution.
/// keys [G, n, P, d] (any strides), centres [G, P, o, d] -> [n, G, P, o] contiguous.
at::Tensor groupedCentreDots(const at::Tensor& keys, const at::Tensor& centres);

/// Representatives (centre + sum of the rows assigned to it) / (1 + their count), rows summed in
/// position order. vCentres [G, P, o, d], values [G, P, n, d], assign [G, P, n] int64 in [0, o),
/// any strides -> [G, P, o, d] contiguous.
at::Tensor clusterRepresentatives(const at::Tensor& vCentres, const at::Tensor& values, const at::Tensor& assign);

/// Dispatch: out[g, i, p * d + c] = reps[g, p, assign[g, p, i], c] * weight[g, p, i].
/// reps [G, P, o, d], assign [G, P, n] int64, weight [G, P, n] float32 (any strides)
/// -> [G, n, P * d] contiguous.
at::Tensor dispatchRepresentatives(const at::Tensor& reps, const at::Tensor& assign, const at::Tensor& weight);

}  // namespace fec::detail
