#pragma once

// Identity of a model file: files derived from a model (an atlas, evidence statistics) record it
// and are refused with another model.

#include <string>

namespace fec {

/// SHA-1 of a whole file as 40 lowercase hex digits (LibTorch's c10::sha1; an identity, not a
/// security check). Throws std::runtime_error naming the file when it cannot be read.
std::string fileSha1(const std::string& path);

}  // namespace fec
