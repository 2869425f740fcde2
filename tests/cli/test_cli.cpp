// `fec trace` output files: names, shapes and values other tools script against.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fec/cli/cli.h"
#include "reference.h"
#include "run_fec.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

using test::runFec;

class CliTrace : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_out = fs::temp_directory_path() / ("fec-cli-test-" + std::to_string(::getpid()));
        fs::remove_all(m_out);
    }
    void TearDown() override { fs::remove_all(m_out); }
    fs::path m_out;
};

TEST_F(CliTrace, NpyInputWritesTheContractFiles)
{
    ASSERT_EQ(runFec({"trace", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--input",
                      test::referencePath("inputs/input_batch.npy"), "--out", m_out.string()}),
              0);
    for (const char* f : {"logits.npy", "pool1_assign.npy", "pool2_assign.npy", "pool3_assign.npy", "input.npy",
                          "stage0_block0_assign.npy", "stage3_block0_assign.npy", "trace.json"})
        EXPECT_TRUE(fs::exists(m_out / f)) << f;

    auto logits = loadNpy((m_out / "logits.npy").string());
    EXPECT_EQ(logits.scalar_type(), at::kFloat);
    EXPECT_LE(test::maxAbsDiff(logits, test::loadReference("tiny_seed0/logits.npy")), 1e-4);
    auto pool1 = loadNpy((m_out / "pool1_assign.npy").string());
    EXPECT_EQ(pool1.scalar_type(), at::kLong);
    EXPECT_TRUE(pool1.equal(test::loadReference("tiny_seed0/network.1.assign.npy")));
    auto block = loadNpy((m_out / "stage2_block0_assign.npy").string());
    EXPECT_EQ(block.sizes(), (std::vector<int64_t>{2, 2, 196}));
    EXPECT_TRUE(loadNpy((m_out / "input.npy").string()).equal(test::loadReference("inputs/input_batch.npy")));

    std::ifstream in(m_out / "trace.json");
    auto j = nlohmann::json::parse(in);
    std::set<std::string> described;
    for (const auto& f : j["files"])
        described.insert(f["file"].get<std::string>());
    for (const auto& entry : fs::directory_iterator(m_out))
        if (entry.path().filename() != "trace.json")
            EXPECT_TRUE(described.count(entry.path().filename().string())) << entry.path();
}

TEST_F(CliTrace, ImageInputUsesTheVisualisationPreprocessing)
{
    ASSERT_EQ(runFec({"trace", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--input",
                      test::referencePath("inputs/chelsea.png"), "--out", m_out.string()}),
              0);
    auto input = loadNpy((m_out / "input.npy").string());
    EXPECT_EQ(test::maxAbsDiff(input[0], test::loadReference("inputs/input_batch.npy")[0]), 0.0);
    auto pool3 = loadNpy((m_out / "pool3_assign.npy").string());
    EXPECT_TRUE(pool3[0].equal(test::loadReference("tiny_seed0/network.5.assign.npy")[0]));
}

TEST_F(CliTrace, EvidenceFilesSplitTheLogitsExactly)
{
    ASSERT_EQ(runFec({"trace", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--input",
                      test::referencePath("inputs/input_batch.npy"), "--out", m_out.string()}),
              0);
    const auto evidence = loadNpy((m_out / "evidence.npy").string());
    const auto bias = loadNpy((m_out / "evidence_bias.npy").string());
    const auto logits = loadNpy((m_out / "logits.npy").string());
    ASSERT_EQ(evidence.sizes(), (std::vector<int64_t>{2, 10, 49}));
    EXPECT_EQ(evidence.scalar_type(), at::kFloat);
    ASSERT_EQ(bias.sizes(), (std::vector<int64_t>{10}));
    const auto sum = evidence.to(at::kDouble).sum(-1) + bias.to(at::kDouble);
    EXPECT_LE(test::maxAbsDiff(sum, logits), 1e-5 * std::max(1.0, logits.abs().max().item<double>()));
}

// Every image command takes the input side and preprocessing stored in the checkpoint.
TEST_F(CliTrace, ImageInputDefaultsToTheCheckpointsSize)
{
    ASSERT_EQ(runFec({"trace", "--checkpoint", FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar", "--input",
                      FEC_SOURCE_DIR "/resources/samples/fashion-ankle-boot-00000.png", "--out", m_out.string()}),
              0);
    EXPECT_EQ(loadNpy((m_out / "input.npy").string()).sizes(), (std::vector<int64_t>{1, 3, 128, 128}));
}

TEST_F(CliTrace, WrongNpyShapeIsRefused)
{
    fs::create_directories(m_out);
    const auto bad = (m_out / "bad.npy").string();
    saveNpy(bad, at::zeros({2, 4, 64, 64}));
    EXPECT_EQ(runFec({"trace", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--input", bad, "--out",
                      (m_out / "o").string()}),
              2);
    EXPECT_FALSE(fs::exists(m_out / "o" / "logits.npy"));
}

}  // namespace
}  // namespace fec
