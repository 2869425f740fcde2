// Hostile inputs reach the command line: file names that are not UTF-8, class names with control
// characters, a model whose outputs are NaN. Nothing breaks the JSON, drives the terminal, or is
// ranked as a result.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <set>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/cli/cli.h"
#include "fec/datasets/image_folder.h"
#include "fec/text.h"
#include "reference.h"
#include "run_fec.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

using test::runFec;

// A file name byte that is not UTF-8 (Linux allows any byte but '/' and NUL).
const std::string kOdd = "odd\xff";

struct Output {
    int rc = 0;
    std::string out, err;
};

Output capture(const std::vector<std::string>& args)
{
    Output o;
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    o.rc = runFec(args);
    std::cout.flush();
    std::cerr.flush();
    o.out = testing::internal::GetCapturedStdout();
    o.err = testing::internal::GetCapturedStderr();
    return o;
}

class Hostile : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_root = fs::temp_directory_path() / ("fec-hostile-test-" + std::to_string(::getpid()));
        fs::remove_all(m_root);
        fs::create_directories(m_root / "in");
        fs::copy_file(test::referencePath("inputs/chelsea.png"), m_root / "in" / "chelsea.png");
        fs::copy_file(test::referencePath("inputs/chelsea.png"), m_root / "in" / (kOdd + ".png"));
    }
    void TearDown() override { fs::remove_all(m_root); }

    // The tiny reference model saved again with these class names (and, optionally, a NaN head).
    std::string saveTiny(const std::vector<std::string>& classNames, bool nanHead = false)
    {
        auto loaded = loadCheckpoint(test::referencePath("tiny_seed0.pth.tar"));
        if (nanHead) {
            at::NoGradGuard noGrad;
            loaded.model->named_parameters()["head.weight"][0][0].fill_(std::numeric_limits<float>::quiet_NaN());
        }
        SaveOptions save;
        save.classNames = classNames;
        const auto path = (m_root / (nanHead ? "nan.pth.tar" : "names.pth.tar")).string();
        saveCheckpoint(path, *loaded.model, save);
        return path;
    }

    fs::path m_root;
};

TEST(Printable, EscapesControlsAndInvalidBytesAndKeepsText)
{
    EXPECT_EQ(printable("chelsea.png"), "chelsea.png");
    EXPECT_EQ(printable("Ελληνικά 日本"), "Ελληνικά 日本");
    EXPECT_EQ(printable("odd\xff.png"), "odd\\xff.png");
    EXPECT_EQ(printable("a\n1. 99.00%  Fake"), "a\\n1. 99.00%  Fake");
    EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
    EXPECT_EQ(printable("del\x7f"), "del\\x7f");
    EXPECT_EQ(printable("c1\xc2\x9b"), "c1\\u009b");          // CSI as a C1 control
    EXPECT_EQ(printable("rlo\xe2\x80\xae"), "rlo\\u202e");    // right-to-left override
    EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
    EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
    EXPECT_EQ(printable("cut\xe6\x97"), "cut\\xe6\\x97");
    EXPECT_EQ(printableLines("one\ntwo\x1b"), "one\ntwo\\x1b");
    EXPECT_NO_THROW(nlohmann::json(printable("\xff\xfe\x80")).dump());
}

TEST(TopClasses, RanksNothingWhenAnOutputIsNotFinite)
{
    EXPECT_EQ(topClasses(at::tensor({1.0f, 2.0f, 3.0f}), 2).size(), 2u);
    EXPECT_TRUE(topClasses(at::tensor({1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f}), 2).empty());
    EXPECT_TRUE(topClasses(at::tensor({1.0f, std::numeric_limits<float>::infinity(), 3.0f}), 2).empty());
}

TEST_F(Hostile, PredictJsonKeepsEveryImageAndEscapesTheOddName)
{
    const auto o = capture(
        {"predict", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--json", (m_root / "in").string()});
    ASSERT_EQ(o.rc, 0) << o.err;
    const auto j = nlohmann::json::parse(o.out);  // throws on invalid UTF-8
    ASSERT_EQ(j.size(), 2u);
    std::set<std::string> files;
    for (const auto& e : j) {
        files.insert(fs::path(e["file"].get<std::string>()).filename().string());
        EXPECT_FALSE(e["top"].empty());
    }
    EXPECT_EQ(files, (std::set<std::string>{"chelsea.png", "odd\\xff.png"}));
    EXPECT_EQ(o.out.find('\xff'), std::string::npos);
}

TEST_F(Hostile, PredictTextShowsTheOddNameEscaped)
{
    const auto o = capture({"predict", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"),
                            (m_root / "in" / (kOdd + ".png")).string()});
    ASSERT_EQ(o.rc, 0) << o.err;
    EXPECT_NE(o.out.find("odd\\xff.png\n"), std::string::npos) << o.out;
    EXPECT_EQ(o.out.find('\xff'), std::string::npos);
}

TEST_F(Hostile, InspectJsonOfAnOddlyNamedCheckpointIsValid)
{
    const auto odd = m_root / (kOdd + ".pth.tar");
    fs::copy_file(test::referencePath("tiny_seed0.pth.tar"), odd);
    const auto o = capture({"inspect", "--json", odd.string()});
    ASSERT_EQ(o.rc, 0) << o.err;
    const auto j = nlohmann::json::parse(o.out);
    EXPECT_EQ(fs::path(j["file"].get<std::string>()).filename().string(), "odd\\xff.pth.tar");
    const auto text = capture({"inspect", odd.string()});
    ASSERT_EQ(text.rc, 0) << text.err;
    EXPECT_NE(text.out.find("odd\\xff.pth.tar"), std::string::npos);
    EXPECT_EQ(text.out.find('\xff'), std::string::npos);
}

TEST_F(Hostile, ClassNamesCannotSpoofLinesOrDriveTheTerminal)
{
    std::vector<std::string> names;
    for (int c = 0; c < 10; ++c)
        names.push_back("class" + std::to_string(c));
    names[0] = "cat\n 1. 99.00%  Fake";
    names[1] = "\x1b[31mred";
    names[2] = "csi\xc2\x9b"
               "2J";  // a C1 control (valid UTF-8: the checkpoint writer refuses invalid text)
    const auto ckpt = saveTiny(names);
    const auto image = (m_root / "in" / "chelsea.png").string();

    const auto o = capture({"predict", "--checkpoint", ckpt, "--topk", "10", image});
    ASSERT_EQ(o.rc, 0) << o.err;
    EXPECT_EQ(o.out.find('\x1b'), std::string::npos);
    EXPECT_EQ(o.out.find("\xc2\x9b"), std::string::npos);
    EXPECT_NE(o.out.find("csi\\u009b2J"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("cat\\n 1. 99.00%  Fake"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("\\x1b[31mred"), std::string::npos) << o.out;
    // A header line, the file line and one line per class: no line was added by a name.
    EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 12) << o.out;

    const auto json = capture({"predict", "--checkpoint", ckpt, "--topk", "10", "--json", image});
    ASSERT_EQ(json.rc, 0) << json.err;
    EXPECT_NO_THROW(nlohmann::json::parse(json.out));
    EXPECT_EQ(json.out.find("\\u001b"), std::string::npos) << "names are escaped before the JSON: " << json.out;

    const auto inspect = capture({"inspect", ckpt});
    ASSERT_EQ(inspect.rc, 0) << inspect.err;
    EXPECT_EQ(inspect.out.find('\x1b'), std::string::npos);
    EXPECT_NE(inspect.out.find("first: cat\\n 1. 99.00%  Fake"), std::string::npos) << inspect.out;
}

TEST_F(Hostile, NanOutputsAreNeverRanked)
{
    const auto ckpt = saveTiny({}, true);
    const auto o = capture({"predict", "--checkpoint", ckpt, (m_root / "in").string()});
    EXPECT_EQ(o.rc, 1);
    EXPECT_EQ(o.out.find('%'), std::string::npos) << "nothing may be ranked: " << o.out;
    EXPECT_NE(
        o.err.find("the model's outputs are not finite (NaN/inf) for " + (m_root / "in" / "chelsea.png").string()),
        std::string::npos)
        << o.err;
    EXPECT_NE(o.err.find("not finite (NaN/inf) for " + printablePath(m_root / "in" / (kOdd + ".png"))),
              std::string::npos)
        << o.err;

    const auto json = capture({"predict", "--checkpoint", ckpt, "--json", (m_root / "in").string()});
    EXPECT_EQ(json.rc, 1);
    const auto j = nlohmann::json::parse(json.out);
    ASSERT_EQ(j.size(), 2u);
    for (const auto& e : j) {
        EXPECT_TRUE(e["top"].empty());
        EXPECT_NE(e["error"].get<std::string>().find("not finite"), std::string::npos);
    }

#ifdef FEC_TEST_EXPLAIN
    const auto out = m_root / "out";
    const auto explain = capture({"explain", "--checkpoint", ckpt, "--out", out.string(), "--format", "png",
                                  (m_root / "in" / "chelsea.png").string()});
    EXPECT_EQ(explain.rc, 1);
    EXPECT_NE(explain.err.find("not finite (NaN/inf) for " + (m_root / "in" / "chelsea.png").string()),
              std::string::npos)
        << explain.err;
    EXPECT_FALSE(fs::exists(out / "chelsea"));
#endif
}

#ifdef FEC_TEST_EXPLAIN
TEST_F(Hostile, ExplainWritesTheCompleteFolderOfAnOddName)
{
    const auto out = m_root / "out";
    const auto o = capture({"explain", "--checkpoint", test::referencePath("tiny_seed0.pth.tar"), "--out", out.string(),
                            "--format", "png,svg", (m_root / "in").string()});
    ASSERT_EQ(o.rc, 0) << o.err;
    for (const auto& dir : {out / "chelsea", out / kOdd})
        for (const char* f : {"levels.npy", "summary.json", "figure.png", "figure.svg", "overlay_level1.png"})
            EXPECT_TRUE(fs::exists(dir / f)) << printablePath(dir / f);
    std::ifstream in(out / kOdd / "summary.json");
    const auto summary = nlohmann::json::parse(in);
    EXPECT_EQ(fs::path(summary["input"].get<std::string>()).filename().string(), "odd\\xff.png");
    EXPECT_EQ(o.out.find('\xff'), std::string::npos);
}
#endif

TEST_F(Hostile, ImageFolderClassNamesArePrintableAndFilesAreFound)
{
    const auto root = m_root / "train";
    for (const auto& cls : {std::string("plain"), kOdd, std::string("esc\x1b[31m")}) {
        fs::create_directories(root / cls);
        fs::copy_file(test::referencePath("inputs/chelsea.png"), root / cls / (kOdd + ".png"));
    }
    datasets::ImageFolder folder(root.string());
    const auto names = folder.classNames();
    ASSERT_EQ(names.size(), 3u);
    for (const auto& n : names)
        EXPECT_TRUE(isPrintable(n)) << n;
    EXPECT_NE(std::find(names.begin(), names.end(), "odd\\xff"), names.end());
    EXPECT_EQ(folder.size(), 3);
    for (int64_t i = 0; i < folder.size(); ++i)
        EXPECT_EQ(folder.get(i).image.dim(), 3) << i;
    // A validation folder named by the training classes finds the same folders.
    datasets::ImageFolder val(root.string(), names);
    EXPECT_EQ(val.size(), 3);
}

}  // namespace
}  // namespace fec
