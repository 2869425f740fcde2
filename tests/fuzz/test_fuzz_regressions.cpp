// Replays every input the fuzzers ever crashed on (tests/fuzz/regressions/<target>/) and the seed
// corpora (tests/fuzz/corpus/<target>/) through the same entry points, in the normal test suite
// and its ordinary build: each must end in a result or the reader's own error type.

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <sys/resource.h>

#include "fec/atomic_file.h"
#include "fec/checkpoint.h"
#include "fec/imaging/image_decode.h"
#include "fec/pickle.h"
#include "fec/train/dataset.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

std::vector<std::string> filesIn(const std::string& relative)
{
    std::vector<std::string> out;
    const fs::path dir = fs::path(FEC_SOURCE_DIR) / relative;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.is_regular_file())
            out.push_back(entry.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

long peakRssMiB()
{
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024;
}

TEST(FuzzRegressions, IdxInputs)
{
    const auto files = filesIn("tests/fuzz/regressions/idx");
    ASSERT_GE(files.size(), 2u);
    for (const auto& path : files) {
        const long before = peakRssMiB();
        try {
            const auto a = train::readIdx(path);
            ADD_FAILURE() << path << ": read " << a.data.size() << " bytes from a crash input";
        } catch (const train::DataError& e) {
            EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
        }
        // oom-header-claims-1gib.idx: 34 bytes whose header claims 1.1 GB used to allocate it.
        EXPECT_LT(peakRssMiB() - before, 64) << path;
    }
    for (const auto& path : filesIn("tests/fuzz/corpus/idx")) {
        const auto a = train::readIdx(path);
        EXPECT_FALSE(a.data.empty()) << path;
    }
}

TEST(FuzzRegressions, CheckpointInputs)
{
    auto replay = [](const std::string& path, bool mustLoad) {
        const auto bytes = readFileBytes(path);
        try {
            const auto archive = pickle::readTorchFile(bytes);
            EXPECT_TRUE(archive.root != nullptr) << path;
        } catch (const pickle::FormatError& e) {
            EXPECT_FALSE(mustLoad) << path << ": " << e.what();
        }
        try {
            pickle::unpickle(bytes.data(), bytes.size(), nullptr, nullptr);
        } catch (const pickle::FormatError&) {
        }
        try {
            readStateDict(path, {}, nullptr);
        } catch (const CheckpointError& e) {
            EXPECT_EQ(std::string(e.what()).rfind(path, 0), 0u) << e.what();
        }
    };
    for (const auto& path : filesIn("tests/fuzz/regressions/checkpoint"))
        replay(path, false);
    // The seed checkpoints are valid files: they must stay loadable, or fuzzing starts from noise.
    int seeds = 0;
    for (const auto& path : filesIn("tests/fuzz/corpus/checkpoint")) {
        const auto name = fs::path(path).filename().string();
        replay(path, name.rfind("zip", 0) == 0 || name.rfind("legacy", 0) == 0);
        ++seeds;
    }
    EXPECT_GE(seeds, 5);
}

TEST(FuzzRegressions, ImageInputs)
{
    for (const auto& path : filesIn("tests/fuzz/regressions/image")) {
        try {
            imaging::loadImageRgb(path);
        } catch (const imaging::ImageError& e) {
            EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
        }
    }
    // Every seed image decodes to a colour picture.
    int seeds = 0;
    for (const auto& path : filesIn("tests/fuzz/corpus/image")) {
        const auto rgb = imaging::loadImageRgb(path);
        EXPECT_EQ(rgb.type(), CV_8UC3) << path;
        ++seeds;
    }
    EXPECT_GE(seeds, 10);
}

}  // namespace
}  // namespace fec
