#pragma once

// Locating the reference fixtures (tests/fixtures/reference) and comparing tensors in tests.

#include <cstdlib>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>

#include "fec/tensor_io.h"

namespace fec::test {

/// FEC_REFERENCE_DIR from the environment, else the path configured at build time.
inline std::string referenceDir()
{
    if (const char* env = std::getenv("FEC_REFERENCE_DIR"))
        return env;
    return FEC_REFERENCE_DIR_DEFAULT;
}

inline std::string referencePath(const std::string& relative)
{
    return referenceDir() + "/" + relative;
}

inline bool referenceExists(const std::string& relative)
{
    return std::filesystem::exists(referencePath(relative));
}

inline at::Tensor loadReference(const std::string& relative)
{
    return fec::loadNpy(referencePath(relative));
}

inline double maxAbsDiff(const at::Tensor& a, const at::Tensor& b)
{
    return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace fec::test
