#pragma once

// Helpers shared by the training tests: temporary folders, a tiny architecture, the
// Fashion-MNIST location, and options for short deterministic runs.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <gtest/gtest.h>

#include "fec/config.h"
#include "fec/train/trainer.h"

namespace fec::test {

class TempDir {
public:
    TempDir()
    {
        static int counter = 0;
        m_path = std::filesystem::temp_directory_path() /
                 ("fec-train-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::create_directories(m_path);
    }
    ~TempDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    std::string path() const { return m_path.string(); }
    std::string file(const std::string& name) const { return (m_path / name).string(); }

private:
    std::filesystem::path m_path;
};

/// The Debian package dataset-fashion-mnist's folder (FEC_FASHION_MNIST overrides it).
inline std::string fashionMnistDir()
{
    if (const char* env = std::getenv("FEC_FASHION_MNIST"))
        return env;
    return "/usr/share/datasets/fashion-mnist";
}

inline bool haveFashionMnist()
{
    return std::filesystem::exists(fashionMnistDir() + "/train-images-idx3-ubyte.gz");
}

#define FEC_REQUIRE_FASHION_MNIST()                                                                                    \
    if (!::fec::test::haveFashionMnist())                                                                              \
    GTEST_SKIP() << "Fashion-MNIST not found at " << ::fec::test::fashionMnistDir()                                    \
                 << " (install the Debian package dataset-fashion-mnist)"

/// A small FEC (about 0.1 M parameters) that trains in milliseconds per step at 32x32.
inline FecConfig tinyConfig()
{
    FecConfig c;
    c.variant = "custom";
    c.layers = {1, 1, 1, 1};
    c.dims = {16, 32, 48, 64};
    c.mlpRatios = {2, 2, 2, 2};
    c.heads = {2, 2, 2, 2};
    c.headDims = {8, 8, 8, 8};
    c.proposalW = {2, 2, 1, 1};
    c.proposalH = {2, 2, 1, 1};
    c.numClasses = 10;
    return c;
}

/// Options for a short run on 32x32 inputs.
inline train::TrainOptions tinyOptions(const std::string& outDir)
{
    train::TrainOptions o;
    o.config = tinyConfig();
    o.size = 32;
    o.batch = 16;
    o.epochs = 1;
    o.workers = 2;
    o.lr = 2e-3;
    o.warmupEpochs = 0.1;
    o.logEvery = 1;
    o.outDir = outDir;
    return o;
}

inline std::string readText(const std::string& path)
{
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace fec::test
