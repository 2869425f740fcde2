// Decoding and preprocessing images exactly like the authors' pipeline.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/atomic_file.h"
#include "fec/imaging/image.h"
#include "reference.h"

namespace fs = std::filesystem;

namespace fec::imaging {
namespace {

fs::path tempDir()
{
    auto dir = fs::temp_directory_path() / ("fec-image-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir;
}

std::string errorOf(const std::string& path)
{
    try {
        loadImageRgb(path);
    } catch (const ImageError& e) {
        return e.what();
    }
    return "";
}

TEST(Image, DecodesLikeTheReference)
{
    auto rgb = loadImageRgb(test::referencePath("inputs/chelsea.png"));
    auto expected = test::loadReference("inputs/chelsea_orig_rgb_uint8.npy");
    ASSERT_EQ(rgb.rows, 300);
    ASSERT_EQ(rgb.cols, 451);
    auto ours = at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte);
    EXPECT_TRUE(ours.equal(expected));
}

TEST(Image, SquashGivesTheReferenceInputExactly)
{
    auto prepared = prepareImage(loadImageRgb(test::referencePath("inputs/chelsea.png")), 224, Preprocess::Squash);
    auto resized = at::from_blob(prepared.rgb.data, {224, 224, 3}, at::kByte);
    EXPECT_TRUE(resized.equal(test::loadReference("inputs/chelsea_resized_rgb_uint8.npy")));
    auto batch = test::loadReference("inputs/input_batch.npy");
    EXPECT_EQ(test::maxAbsDiff(prepared.tensor, batch[0]), 0.0);
    EXPECT_NEAR(prepared.mapping.scaleX, 451.0 / 224.0, 1e-12);
}

TEST(Image, CropTakesTheCentre)
{
    cv::Mat wide(300, 600, CV_8UC3, cv::Scalar(0, 0, 0));
    wide(cv::Rect(250, 100, 100, 100)).setTo(cv::Scalar(255, 255, 255));
    auto prepared = prepareImage(wide, 224, Preprocess::Crop);
    EXPECT_EQ(prepared.rgb.rows, 224);
    EXPECT_EQ(prepared.rgb.cols, 224);
    // Shorter side 300 -> 248, so the 100 px white square becomes ~83 px, centred.
    EXPECT_GT(prepared.rgb.at<cv::Vec3b>(112, 112)[0], 250);
    EXPECT_LT(prepared.rgb.at<cv::Vec3b>(10, 10)[0], 5);
    // The model-input centre maps back to the image centre.
    EXPECT_NEAR(prepared.mapping.offsetX + 112 * prepared.mapping.scaleX, 300, 2.0);
    EXPECT_NEAR(prepared.mapping.offsetY + 112 * prepared.mapping.scaleY, 150, 2.0);
}

TEST(Image, GreyAlphaAnd16BitBecomeRgb)
{
    auto dir = tempDir();
    cv::Mat grey(40, 60, CV_8UC1, cv::Scalar(77));
    cv::imwrite((dir / "grey.png").string(), grey);
    auto g = loadImageRgb((dir / "grey.png").string());
    EXPECT_EQ(g.type(), CV_8UC3);
    EXPECT_EQ(g.at<cv::Vec3b>(5, 5), cv::Vec3b(77, 77, 77));

    cv::Mat deep(40, 60, CV_16UC3, cv::Scalar(65535, 0, 0));  // BGR: pure blue
    cv::imwrite((dir / "deep.png").string(), deep);
    auto d = loadImageRgb((dir / "deep.png").string());
    EXPECT_EQ(d.at<cv::Vec3b>(5, 5), cv::Vec3b(0, 0, 255));

    cv::Mat alpha(40, 60, CV_8UC4, cv::Scalar(0, 0, 255, 0));  // fully transparent red
    cv::imwrite((dir / "alpha.png").string(), alpha);
    auto a = loadImageRgb((dir / "alpha.png").string());
    EXPECT_EQ(a.at<cv::Vec3b>(5, 5), cv::Vec3b(255, 255, 255));
    fs::remove_all(dir);
}

TEST(Image, BadFilesGiveMessagesNamingTheFile)
{
    auto dir = tempDir();
    const auto empty = (dir / "empty.png").string();
    writeFileAtomic(empty, std::string());
    EXPECT_NE(errorOf(empty).find(empty + ": the file is empty"), std::string::npos);

    const auto text = (dir / "notes.jpg").string();
    writeFileAtomic(text, std::string("this is not a jpeg"));
    EXPECT_NE(errorOf(text).find("not a readable image"), std::string::npos) << errorOf(text);

    const auto missing = (dir / "nope.png").string();
    EXPECT_NE(errorOf(missing).find(missing), std::string::npos);

    // Non-ASCII path.
    cv::Mat small(8, 8, CV_8UC3, cv::Scalar(1, 2, 3));
    std::vector<uint8_t> png;
    cv::imencode(".png", small, png);
    const auto unicode = (dir / "bild_\xC3\xBC\xE7\x8C\xAB.png").string();
    writeFileAtomic(unicode, png);
    EXPECT_EQ(loadImageRgb(unicode).cols, 8);

    // Truncated PNG.
    auto chelsea = readFileBytes(test::referencePath("inputs/chelsea.png"));
    const auto cut = (dir / "cut.png").string();
    writeFileAtomic(cut, chelsea.data(), chelsea.size() / 2);
    const auto message = errorOf(cut);
    EXPECT_FALSE(message.empty()) << "a half PNG decoded silently";
    fs::remove_all(dir);
}

TEST(Image, PixelLimitRefusesHugeImages)
{
    auto dir = tempDir();
    cv::Mat big(1000, 1000, CV_8UC3, cv::Scalar(0, 0, 0));
    const auto path = (dir / "big.png").string();
    cv::imwrite(path, big);
    ImageLoadOptions options;
    options.maxPixels = 500'000;
    try {
        loadImageRgb(path, options);
        FAIL() << "limit not applied";
    } catch (const ImageError& e) {
        EXPECT_NE(std::string(e.what()).find("more than the limit"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace fec::imaging
