// `fec explain` as scripts use it: folder layout, contract files, figures, overwrite rules.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/atomic_file.h"
#include "fec/cli/cli.h"
#include "fec/tensor_io.h"
#include "reference.h"
#include "run_fec.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

using test::runFec;

std::string readText(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

class Explain : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_root = fs::temp_directory_path() / ("fec-explain-test-" + std::to_string(::getpid()));
        fs::remove_all(m_root);
        fs::create_directories(m_root / "in" / "nested");
        fs::copy_file(test::referencePath("inputs/chelsea.png"), m_root / "in" / "chelsea.png");
        // A second, smaller image in a sub-folder, and a broken file that must be skipped.
        cv::Mat img = cv::imread(test::referencePath("inputs/chelsea.png"));
        cv::Mat small;
        cv::resize(img, small, cv::Size(160, 120));
        cv::imwrite((m_root / "in" / "nested" / "small.jpg").string(), small);
        writeFileAtomic((m_root / "in" / "broken.png").string(), std::string("not an image"));
    }
    void TearDown() override { fs::remove_all(m_root); }
    fs::path m_root;
};

TEST_F(Explain, WritesTheContractFilesPerImage)
{
    const auto out = m_root / "out";
    const int rc = runFec({"explain", "--checkpoint", test::referencePath("fec_small_seed0.pth.tar"), "--weights",
                           "state_dict", "--out", out.string(), "--k", "3,5", "--format", "png,svg,pdf", "--data",
                           (m_root / "in").string()});
    EXPECT_EQ(rc, 1) << "the broken file must make the exit status say not all succeeded";
    ASSERT_TRUE(fs::exists(out / "chelsea" / "levels.npy"));
    ASSERT_TRUE(fs::exists(out / "small" / "levels.npy"));
    EXPECT_FALSE(fs::exists(out / "broken"));

    // levels.npy: [L, H, W] int32 at the model input's resolution, the reference partitions.
    auto levels = loadNpy((out / "chelsea" / "levels.npy").string());
    EXPECT_EQ(levels.scalar_type(), at::kInt);
    EXPECT_EQ(levels.sizes(), (std::vector<int64_t>{3, 224, 224}));
    EXPECT_TRUE(levels[2].to(at::kLong).equal(test::loadReference("fec_small_seed0/segments/final.npy")[0]));

    auto k3 = loadNpy((out / "chelsea" / "kmeans_k3.npy").string());
    EXPECT_EQ(k3.scalar_type(), at::kInt);
    EXPECT_EQ(k3.sizes(), (std::vector<int64_t>{224, 224}));
    EXPECT_EQ(std::get<0>(at::_unique(k3)).numel(), 3);

    for (const char* f : {"figure.png", "figure.svg", "figure.pdf", "overlay_level1.png", "overlay_level3.png",
                          "overlay_kmeans_k5.png", "level2.png", "hierarchy.json", "confidence.npy", "summary.json"})
        EXPECT_TRUE(fs::exists(out / "chelsea" / f)) << f;
    // Overlays are at the image's own resolution.
    auto overlay = cv::imread((out / "chelsea" / "overlay_level2.png").string());
    EXPECT_EQ(overlay.cols, 451);
    EXPECT_EQ(overlay.rows, 300);
    // 16-bit label PNGs hold the compact labels.
    auto level1 = cv::imread((out / "chelsea" / "level1.png").string(), cv::IMREAD_UNCHANGED);
    EXPECT_EQ(level1.depth(), CV_16U);
    // The figure has one panel per level and per k: image + 3 levels + 2 merges.
    const auto svg = readText(out / "chelsea" / "figure.svg");
    size_t images = 0;
    for (size_t p = svg.find("<image"); p != std::string::npos; p = svg.find("<image", p + 1))
        ++images;
    EXPECT_EQ(images, 6u);
    EXPECT_EQ(readText(out / "chelsea" / "figure.pdf").rfind("%PDF", 0), 0u);

    auto summary = nlohmann::json::parse(readText(out / "chelsea" / "summary.json"));
    EXPECT_EQ(summary["levels"].size(), 3u);
    EXPECT_EQ(summary["kmeans"][0]["k"], 3);
}

TEST_F(Explain, NeverOverwritesWithoutBeingAsked)
{
    const auto out = m_root / "out";
    const auto image = (m_root / "in" / "chelsea.png").string();
    const auto ckpt = test::referencePath("tiny_seed0.pth.tar");
    ASSERT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", out.string(), "--format", "png", image}), 0);
    const auto levels = out / "chelsea" / "levels.npy";
    writeFileAtomic(levels.string(), std::string("user data"));
    EXPECT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", out.string(), image}), 1);
    EXPECT_EQ(readText(levels), "user data");
    EXPECT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", out.string(), "--overwrite", image}), 0);
    EXPECT_NE(readText(levels), "user data");
}

TEST_F(Explain, SameInputsGiveTheSameFiles)
{
    const auto ckpt = test::referencePath("tiny_seed0.pth.tar");
    const auto image = (m_root / "in" / "chelsea.png").string();
    ASSERT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "a").string(), "--format", "png", image}), 0);
    ASSERT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "b").string(), "--format", "png", image}), 0);
    for (const char* f : {"levels.npy", "kmeans_k3.npy", "kmeans_k5.npy"})
        EXPECT_EQ(readText(m_root / "a" / "chelsea" / f), readText(m_root / "b" / "chelsea" / f)) << f;
}

}  // namespace
}  // namespace fec
