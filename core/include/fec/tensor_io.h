#pragma once

// .npy files <-> tensors.

#include <string>

#include <ATen/Tensor.h>

#include "fec/npy.h"

namespace fec {

/// Converts a decoded .npy array (float32/64, int64/32/16/8, uint8, bool) to an owned tensor.
at::Tensor toTensor(const npy::Array& array);
/// Converts a tensor (moved to the CPU, made contiguous) to an .npy array of the same dtype.
npy::Array toNpy(const at::Tensor& tensor);
/// Reads an .npy file as a tensor; throws std::runtime_error naming the file.
at::Tensor loadNpy(const std::string& path);
/// Writes a tensor as .npy, atomically; throws std::runtime_error naming the file.
void saveNpy(const std::string& path, const at::Tensor& tensor);

}  // namespace fec
