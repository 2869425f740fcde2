// `fec explain` as scripts use it: folder layout, contract files, figures, overwrite rules.

#include <filesystem>
#include <fstream>
#include <sstream>

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
    const int rc =
        runFec({"explain", "--checkpoint", test::referencePath("fec_small_seed0.pth.tar"), "--weights", "state_dict",
                "--out", out.string(), "--k", "3,5", "--format", "png,svg,pdf", "--data", (m_root / "in").string()});
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

TEST_F(Explain, EvidenceFilesForTheTopClassAndAnyOther)
{
    const auto out = m_root / "out";
    const auto image = FEC_SOURCE_DIR "/resources/samples/fashion-ankle-boot-00000.png";
    ASSERT_EQ(runFec({"explain", "--checkpoint", FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar", "--out",
                      out.string(), "--format", "png", "--evidence", image}),
              0);
    const auto dir = out / "fashion-ankle-boot-00000";
    // Without --class: the top-1 class, which the default model gets right for this sample.
    ASSERT_TRUE(fs::exists(dir / "evidence_Ankle_boot.npy"));
    EXPECT_TRUE(fs::exists(dir / "evidence_Ankle_boot.png"));
    const auto density = loadNpy((dir / "evidence_Ankle_boot.npy").string());
    EXPECT_EQ(density.scalar_type(), at::kFloat);
    const cv::Mat original = cv::imread(image);
    EXPECT_EQ(density.sizes(), (std::vector<int64_t>{original.rows, original.cols}));

    // segments_<class>.csv: every segment of every level; the last level's contributions plus the
    // bias and the unlocated share give the logit recorded in summary.json.
    const auto csv = readText(dir / "segments_Ankle_boot.csv");
    ASSERT_EQ(csv.rfind("level,segment,pixels,x0,y0,x1,y1,contribution,ablation_effect\n", 0), 0u);
    auto summary = nlohmann::json::parse(readText(dir / "summary.json"));
    const auto& ev = summary["evidence"][0];
    EXPECT_EQ(ev["name"], "Ankle boot");
    double lastLevel = 0, located = density.to(at::kDouble).sum().item<double>();
    int rows = 0, withEffect = 0;
    std::istringstream lines(csv);
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
        ++rows;
        std::vector<std::string> cells;
        std::stringstream cellStream(line);
        for (std::string c; std::getline(cellStream, c, ',');)
            cells.push_back(c);
        if (cells.size() == 9 && !cells[8].empty())
            ++withEffect;
        if (cells[0] == "3")
            lastLevel += std::stod(cells[7]);
    }
    EXPECT_GT(rows, 16);
    EXPECT_EQ(withEffect, rows) << "every segment carries its ablation effect";
    const double logit = ev["logit"].get<double>(), bias = ev["bias"].get<double>(),
                 unlocated = ev["unlocated"].get<double>();
    EXPECT_NEAR(lastLevel + bias + unlocated, logit, 1e-4 * std::max(1.0, std::abs(logit)));
    // The density at the image's resolution holds the located evidence (nearest sampling: ~1%).
    EXPECT_NEAR(located, logit - bias - unlocated, 0.02 * std::max(1.0, std::abs(logit - bias)));

    // Any class by name or index, and a contrast.
    ASSERT_EQ(runFec({"explain", "--checkpoint", FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar", "--out",
                      out.string(), "--overwrite", "--format", "png", "--evidence", "--class", "sneaker", "--class",
                      "5", "--versus", "Ankle boot", image}),
              0);
    EXPECT_TRUE(fs::exists(dir / "evidence_Sneaker_vs_Ankle_boot.npy"));
    EXPECT_TRUE(fs::exists(dir / "segments_Sandal_vs_Ankle_boot.csv"));
}

TEST_F(Explain, EvidenceClassMistakesSayWhatIsValid)
{
    testing::internal::CaptureStderr();
    EXPECT_EQ(
        runFec({"explain", "--checkpoint", FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar", "--out",
                (m_root / "o").string(), "--evidence", "--class", "boots", (m_root / "in" / "chelsea.png").string()}),
        2);
    const auto err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("no class named 'boots'"), std::string::npos) << err;
    EXPECT_NE(err.find("Ankle boot"), std::string::npos) << err;
    testing::internal::CaptureStderr();
    EXPECT_EQ(
        runFec({"explain", "--checkpoint", FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar", "--out",
                (m_root / "o").string(), "--evidence", "--class", "12", (m_root / "in" / "chelsea.png").string()}),
        2);
    EXPECT_NE(testing::internal::GetCapturedStderr().find("0 to 9"), std::string::npos);
}

TEST_F(Explain, DatasetBaselineNeedsTheModelsStatistics)
{
    // No statistics beside the checkpoint: the message says what to run, before any image.
    const auto ckpt = test::referencePath("tiny_seed0.pth.tar");
    testing::internal::CaptureStderr();
    EXPECT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "o").string(), "--format", "", "--evidence",
                      "--baseline", "dataset", (m_root / "in" / "chelsea.png").string()}),
              2);
    auto err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("run `fec evidence-stats --checkpoint " + ckpt + " --data"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(m_root / "o" / "chelsea"));
    // A file given with --evidence-stats that is not there is named.
    testing::internal::CaptureStderr();
    EXPECT_EQ(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "o").string(), "--format", "", "--evidence",
                      "--baseline", "dataset", "--evidence-stats", (m_root / "nope.json").string(),
                      (m_root / "in" / "chelsea.png").string()}),
              2);
    err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find((m_root / "nope.json").string()), std::string::npos) << err;
    // The ablation flags go with --evidence, --evidence-stats with --baseline dataset.
    testing::internal::CaptureStderr();
    EXPECT_NE(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "o").string(), "--baseline", "zero",
                      (m_root / "in" / "chelsea.png").string()}),
              0);
    EXPECT_NE(testing::internal::GetCapturedStderr().find("go with --evidence"), std::string::npos);
    testing::internal::CaptureStderr();
    EXPECT_NE(runFec({"explain", "--checkpoint", ckpt, "--out", (m_root / "o").string(), "--evidence",
                      "--evidence-stats", (m_root / "nope.json").string(), (m_root / "in" / "chelsea.png").string()}),
              0);
    EXPECT_NE(testing::internal::GetCapturedStderr().find("goes with --baseline dataset"), std::string::npos);
    // The help names the three baselines.
    testing::internal::CaptureStdout();
    runFec({"explain", "--help"});
    const auto help = testing::internal::GetCapturedStdout();
    EXPECT_NE(help.find("dataset (the model's mean feature per level"), std::string::npos) << help;
}

}  // namespace
}  // namespace fec
