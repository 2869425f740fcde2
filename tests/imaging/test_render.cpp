// Drawing label maps over user images: sizes, colours, outlines, crops and image files.

#include <cmath>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/imaging/image.h"
#include "fec/imaging/render.h"

namespace fs = std::filesystem;

namespace fec::imaging {
namespace {

fs::path tempDir()
{
    auto dir = fs::temp_directory_path() / ("fec-render-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir;
}

cv::Mat noise(int rows, int cols, int seed)
{
    cv::Mat m(rows, cols, CV_8UC3);
    cv::RNG rng(seed);
    rng.fill(m, cv::RNG::UNIFORM, 0, 256);
    return m;
}

// A 224x224 label map made of 4x4 blocks with a handful of labels, like a pyramid level.
at::Tensor blockyLabels(int labels, int seed)
{
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto blocks = at::randint(labels, {56, 56}, gen, at::kInt);
    return blocks.repeat_interleave(4, 0).repeat_interleave(4, 1).contiguous();
}

// Label of an original pixel as documented: model coordinate floor((x + 0.5 - offset) / scale).
int labelAt(const at::Tensor& labels, const InputMapping& m, int x, int y)
{
    const double u = (x + 0.5 - m.offsetX) / m.scaleX, v = (y + 0.5 - m.offsetY) / m.scaleY;
    if (u < 0 || v < 0 || u >= m.inputSize || v >= m.inputSize)
        return -2;
    const int col = std::min<int>(labels.size(1) - 1, static_cast<int>(u * labels.size(1) / m.inputSize));
    const int row = std::min<int>(labels.size(0) - 1, static_cast<int>(v * labels.size(0) / m.inputSize));
    return labels[row][col].item<int>();
}

InputMapping squashMapping(int width, int height, int size = 224)
{
    InputMapping m;
    m.inputSize = size;
    m.imageWidth = width;
    m.imageHeight = height;
    m.scaleX = static_cast<double>(width) / size;
    m.scaleY = static_cast<double>(height) / size;
    return m;
}

TEST(Palette, FirstColoursAreDistinctAndColourBlindSafe)
{
    EXPECT_EQ(paletteColour(0), cv::Vec3b(230, 159, 0));   // Okabe-Ito orange
    EXPECT_EQ(paletteColour(1), cv::Vec3b(86, 180, 233));  // Okabe-Ito sky blue
    std::set<std::tuple<int, int, int>> seen;
    for (int i = 0; i < 64; ++i) {
        const auto c = paletteColour(i);
        EXPECT_NE(c, cv::Vec3b(0, 0, 0)) << i;
        EXPECT_TRUE(seen.emplace(c[0], c[1], c[2]).second) << "colour " << i << " repeats an earlier one";
    }
    EXPECT_EQ(paletteColour(-1), cv::Vec3b(0, 0, 0));
}

TEST(Palette, NeighbouringLabelsDifferUpToAFullLevel)
{
    for (int i = 0; i + 1 < 784; ++i) {
        const auto a = paletteColour(i), b = paletteColour(i + 1);
        const double distance = cv::norm(cv::Vec3d(a[0], a[1], a[2]) - cv::Vec3d(b[0], b[1], b[2]));
        EXPECT_GT(distance, 100) << "labels " << i << " and " << i + 1 << " look alike";
    }
    EXPECT_EQ(paletteColour(500), paletteColour(500));
}

TEST(Colourise, UsesThePaletteOrTheGivenColours)
{
    auto labels = at::tensor({0, 1, 2, -1}, at::kInt).reshape({2, 2});
    auto plain = colourise(labels);
    ASSERT_EQ(plain.type(), CV_8UC3);
    EXPECT_EQ(plain.at<cv::Vec3b>(0, 0), paletteColour(0));
    EXPECT_EQ(plain.at<cv::Vec3b>(1, 0), paletteColour(2));
    EXPECT_EQ(plain.at<cv::Vec3b>(1, 1), cv::Vec3b(0, 0, 0));
    const std::vector<int> colourOf{5, 3, 9};
    auto mapped = colourise(labels, &colourOf);
    EXPECT_EQ(mapped.at<cv::Vec3b>(0, 0), paletteColour(5));
    EXPECT_EQ(mapped.at<cv::Vec3b>(0, 1), paletteColour(3));
}

TEST(Overlay, HasTheImageSizeForSquashAndCrop)
{
    const cv::Mat image = noise(300, 451, 1);
    const auto labels = blockyLabels(12, 1);
    for (auto mode : {Preprocess::Squash, Preprocess::Crop}) {
        const auto prepared = prepareImage(image, 224, mode);
        for (auto drawing : {OverlayStyle::Mode::Fill, OverlayStyle::Mode::Outline, OverlayStyle::Mode::Both}) {
            OverlayStyle style;
            style.mode = drawing;
            const cv::Mat out = overlay(image, labels, prepared.mapping, style);
            EXPECT_EQ(out.size(), image.size()) << preprocessName(mode);
            EXPECT_EQ(out.type(), CV_8UC3);
        }
    }
}

TEST(Overlay, FullOpacityFillPaintsExactlyThePaletteColour)
{
    const cv::Mat image = noise(300, 451, 2);
    const auto labels = blockyLabels(30, 2);
    const auto mapping = prepareImage(image, 224, Preprocess::Squash).mapping;
    OverlayStyle style;
    style.mode = OverlayStyle::Mode::Fill;
    style.opacity = 1.0;
    const std::vector<int> colourOf = [] {
        std::vector<int> c(30);
        for (int i = 0; i < 30; ++i)
            c[i] = 29 - i;
        return c;
    }();
    const cv::Mat plain = overlay(image, labels, mapping, style);
    const cv::Mat mapped = overlay(image, labels, mapping, style, &colourOf);
    const auto accessor = labels.accessor<int32_t, 2>();
    int wrong = 0, wrongMapped = 0;
    for (int y = 0; y < image.rows; ++y) {
        for (int x = 0; x < image.cols; ++x) {
            const int u = static_cast<int>((x + 0.5) / mapping.scaleX),
                      v = static_cast<int>((y + 0.5) / mapping.scaleY);
            const int label = accessor[v][u];
            wrong += plain.at<cv::Vec3b>(y, x) != paletteColour(label);
            wrongMapped += mapped.at<cv::Vec3b>(y, x) != paletteColour(colourOf[label]);
        }
    }
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(wrongMapped, 0);
}

TEST(Overlay, HalfOpacityBlendsImageAndColour)
{
    const cv::Mat image(64, 64, CV_8UC3, cv::Scalar(200, 100, 0));
    const auto labels = at::zeros({224, 224}, at::kInt);
    OverlayStyle style;
    style.mode = OverlayStyle::Mode::Fill;
    style.opacity = 0.5;
    const cv::Mat out = overlay(image, labels, squashMapping(64, 64), style);
    const auto c = paletteColour(0);
    for (int ch = 0; ch < 3; ++ch)
        EXPECT_NEAR(out.at<cv::Vec3b>(10, 10)[ch], (image.at<cv::Vec3b>(10, 10)[ch] + c[ch]) / 2.0, 1.0);
}

// Pixels whose nearest-neighbour label differs from the right or lower neighbour.
cv::Mat expectedBoundary(const at::Tensor& labels, const InputMapping& m)
{
    cv::Mat up(m.imageHeight, m.imageWidth, CV_32S);
    for (int y = 0; y < up.rows; ++y)
        for (int x = 0; x < up.cols; ++x)
            up.at<int>(y, x) = labelAt(labels, m, x, y);
    cv::Mat boundary = cv::Mat::zeros(up.size(), CV_8U);
    for (int y = 0; y < up.rows; ++y)
        for (int x = 0; x < up.cols; ++x)
            if ((x + 1 < up.cols && up.at<int>(y, x) != up.at<int>(y, x + 1)) ||
                (y + 1 < up.rows && up.at<int>(y, x) != up.at<int>(y + 1, x)))
                boundary.at<uchar>(y, x) = 255;
    return boundary;
}

cv::Mat changedPixels(const cv::Mat& a, const cv::Mat& b)
{
    cv::Mat diff, grey, mask;
    cv::absdiff(a, b, diff);
    cv::cvtColor(diff, grey, cv::COLOR_RGB2GRAY);
    cv::compare(grey, 0, mask, cv::CMP_GT);
    return mask;
}

TEST(Overlay, OutlinePaintsOnlyBoundaryPixels)
{
    const cv::Mat black(300, 451, CV_8UC3, cv::Scalar(0, 0, 0));
    const auto labels = blockyLabels(4, 3);
    const auto mapping = squashMapping(451, 300);
    OverlayStyle style;
    style.mode = OverlayStyle::Mode::Outline;
    style.outlineColour = {255, 255, 255};
    const cv::Mat boundary = expectedBoundary(labels, mapping);
    ASSERT_GT(cv::countNonZero(boundary), 1000);

    const cv::Mat thin = overlay(black, labels, mapping, style);
    const cv::Mat painted = changedPixels(thin, black);
    EXPECT_EQ(cv::countNonZero(painted != boundary), 0);
    EXPECT_EQ(thin.at<cv::Vec3b>(cv::Point(0, 0)) == cv::Vec3b(255, 255, 255), boundary.at<uchar>(0, 0) == 255);

    style.outlineThickness = 3;
    const cv::Mat thick = changedPixels(overlay(black, labels, mapping, style), black);
    cv::Mat reach;
    cv::dilate(boundary, reach, cv::getStructuringElement(cv::MORPH_RECT, cv::Size(3, 3)));
    EXPECT_EQ(cv::countNonZero(boundary & ~thick), 0) << "every boundary pixel is painted";
    EXPECT_EQ(cv::countNonZero(thick & ~reach), 0) << "nothing farther than 1 px from a boundary";
    EXPECT_GT(cv::countNonZero(thick), cv::countNonZero(boundary) * 2);
}

TEST(Overlay, CropLeavesOutsidePixelsDarkenedAndUnlabelled)
{
    const cv::Mat image = noise(300, 600, 4);
    const auto prepared = prepareImage(image, 224, Preprocess::Crop);
    const auto& m = prepared.mapping;
    ASSERT_GT(m.offsetX, 20);
    const auto labels = blockyLabels(9, 4);
    OverlayStyle style;  // Both
    const cv::Mat out = overlay(image, labels, m, style);
    const int left = static_cast<int>(std::floor(m.offsetX)) - 1;
    const int right = static_cast<int>(std::ceil(m.offsetX + m.inputSize * m.scaleX)) + 1;
    int wrong = 0, outside = 0;
    for (int y = 0; y < image.rows; ++y) {
        for (int x = 0; x < image.cols; ++x) {
            if (x >= left && x < right)
                continue;
            ++outside;
            for (int ch = 0; ch < 3; ++ch)
                wrong += std::abs(out.at<cv::Vec3b>(y, x)[ch] - image.at<cv::Vec3b>(y, x)[ch] * 0.5) > 1.0;
        }
    }
    EXPECT_GT(outside, 10000);
    EXPECT_EQ(wrong, 0);
    // Inside, the fill is there.
    const int cx = image.cols / 2, cy = image.rows / 2;
    const auto colour = paletteColour(labelAt(labels, m, cx, cy));
    for (int ch = 0; ch < 3; ++ch)
        EXPECT_NEAR(out.at<cv::Vec3b>(cy, cx)[ch],
                    image.at<cv::Vec3b>(cy, cx)[ch] * (1 - style.opacity) + colour[ch] * style.opacity, 1.0);
}

TEST(Overlay, EarlierResultsSurviveLaterCalls)
{
    // overlay() recycles its output buffer only once the caller has let go of it.
    const cv::Mat image = noise(120, 160, 3);
    const auto mapping = squashMapping(160, 120);
    OverlayStyle style;
    const cv::Mat first = overlay(image, blockyLabels(5, 1), mapping, style);
    const cv::Mat kept = first.clone();
    const cv::Mat second = overlay(image, blockyLabels(9, 2), mapping, style);
    EXPECT_NE(first.data, second.data);
    EXPECT_EQ(cv::norm(first, kept, cv::NORM_INF), 0.0);
    EXPECT_GT(cv::norm(first, second, cv::NORM_INF), 0.0);
}

TEST(Overlay, NegativeLabelsLeaveTheImageAlone)
{
    const cv::Mat image = noise(224, 224, 5);
    auto labels = at::zeros({224, 224}, at::kInt);
    labels.slice(1, 0, 112).fill_(-1);
    OverlayStyle style;
    style.mode = OverlayStyle::Mode::Fill;
    style.opacity = 1;
    const cv::Mat out = overlay(image, labels, squashMapping(224, 224), style);
    EXPECT_EQ(cv::countNonZero(changedPixels(out.colRange(0, 112), image.colRange(0, 112))), 0);
    EXPECT_EQ(out.at<cv::Vec3b>(5, 200), paletteColour(0));
}

TEST(Overlay, MedianFilterRemovesSpecksForDisplayOnly)
{
    const cv::Mat image(224, 224, CV_8UC3, cv::Scalar(0, 0, 0));
    auto labels = at::zeros({224, 224}, at::kInt);
    labels[100][100] = 7;
    OverlayStyle style;
    style.mode = OverlayStyle::Mode::Fill;
    style.opacity = 1;
    EXPECT_EQ(overlay(image, labels, squashMapping(224, 224), style).at<cv::Vec3b>(100, 100), paletteColour(7));
    style.medianKernel = 3;
    EXPECT_EQ(overlay(image, labels, squashMapping(224, 224), style).at<cv::Vec3b>(100, 100), paletteColour(0));
    EXPECT_EQ(labels[100][100].item<int>(), 7);
}

TEST(Overlay, RedrawingReusesTheOutputBuffer)
{
    const cv::Mat image = noise(300, 451, 9);
    const auto mapping = squashMapping(451, 300);
    OverlayStyle style;
    style.outlineThickness = 2;
    cv::Mat out;
    overlayInto(image, blockyLabels(5, 9), mapping, style, out);
    const uchar* buffer = out.data;
    overlayInto(image, blockyLabels(7, 10), mapping, style, out);
    EXPECT_EQ(out.data, buffer);
    const cv::Mat fresh = overlay(image, blockyLabels(7, 10), mapping, style);
    EXPECT_EQ(cv::countNonZero(changedPixels(out, fresh)), 0);
    cv::Mat self = image.clone();
    overlayInto(self, blockyLabels(7, 10), mapping, style, self);
    EXPECT_EQ(cv::countNonZero(changedPixels(self, fresh)), 0);
}

TEST(Overlay, RejectsAMappingOfAnotherImage)
{
    const cv::Mat image = noise(100, 120, 6);
    EXPECT_THROW(overlay(image, at::zeros({224, 224}, at::kInt), squashMapping(120, 101), OverlayStyle{}),
                 std::invalid_argument);
    EXPECT_THROW(overlay(image, at::zeros({224}, at::kInt), squashMapping(120, 100), OverlayStyle{}),
                 std::invalid_argument);
}

TEST(Highlight, DimsEverythingButTheSelectionAndOutlinesIt)
{
    const cv::Mat base(224, 224, CV_8UC3, cv::Scalar(200, 200, 200));
    std::vector<uint8_t> mask(56 * 56, 0);
    for (int r = 10; r < 20; ++r)
        for (int c = 10; c < 30; ++c)
            mask[r * 56 + c] = 1;
    const cv::Vec3b red(255, 0, 0);
    const cv::Mat out = highlight(base, mask, 56, 56, squashMapping(224, 224), red);
    ASSERT_EQ(out.size(), base.size());
    EXPECT_EQ(out.at<cv::Vec3b>(60, 80), cv::Vec3b(200, 200, 200)) << "inside stays";
    EXPECT_EQ(out.at<cv::Vec3b>(150, 150), cv::Vec3b(70, 70, 70)) << "outside is dimmed";
    EXPECT_EQ(out.at<cv::Vec3b>(40, 80), red) << "top edge of the selection";
    EXPECT_EQ(out.at<cv::Vec3b>(60, 119), red) << "right edge of the selection";
    EXPECT_THROW(highlight(base, std::vector<uint8_t>(10, 1), 56, 56, squashMapping(224, 224), red),
                 std::invalid_argument);
}

TEST(WriteImage, RgbRoundTripsThroughPng)
{
    const auto path = (tempDir() / "overlay.png").string();
    const cv::Mat image = noise(37, 53, 7);
    writeImageAtomic(path, image);
    cv::Mat back = cv::imread(path, cv::IMREAD_UNCHANGED);
    ASSERT_EQ(back.type(), CV_8UC3);
    cv::cvtColor(back, back, cv::COLOR_BGR2RGB);
    EXPECT_EQ(cv::countNonZero(changedPixels(back, image)), 0);
}

TEST(WriteImage, SixteenBitPngKeepsItsValues)
{
    const auto path = (tempDir() / "labels16.png").string();
    cv::Mat labels(20, 30, CV_16UC1);
    for (int y = 0; y < labels.rows; ++y)
        for (int x = 0; x < labels.cols; ++x)
            labels.at<uint16_t>(y, x) = static_cast<uint16_t>(y * 1000 + x * 37 + 300);
    writeImageAtomic(path, labels);
    const cv::Mat back = cv::imread(path, cv::IMREAD_UNCHANGED);
    ASSERT_EQ(back.type(), CV_16UC1);
    EXPECT_EQ(cv::norm(back, labels, cv::NORM_INF), 0);
}

std::string writeError(const std::string& path, const cv::Mat& image)
{
    try {
        writeImageAtomic(path, image);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

TEST(WriteImage, FailuresNameTheFile)
{
    const cv::Mat rgb = noise(8, 8, 8);
    const auto dir = tempDir();
    const auto unknown = (dir / "figure.nope").string();
    EXPECT_NE(writeError(unknown, rgb).find(unknown), std::string::npos);
    const auto missing = (dir / "no-such-folder" / "a.png").string();
    EXPECT_NE(writeError(missing, rgb).find(missing), std::string::npos);
    const auto jpeg16 = (dir / "deep.jpg").string();
    EXPECT_NE(writeError(jpeg16, cv::Mat(4, 4, CV_16UC1, cv::Scalar(1))).find(jpeg16), std::string::npos);
    EXPECT_FALSE(fs::exists(jpeg16));
}

}  // namespace
}  // namespace fec::imaging
