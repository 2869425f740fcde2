// Decoding and preprocessing images exactly like the authors' pipeline.

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <random>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/atomic_file.h"
#include "fec/imaging/image.h"
#include "fec/datasets/image_folder.h"
#include "fec/train/dataset.h"
#include "cpu_time.h"
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

using Bytes = std::vector<uint8_t>;

uint32_t crc32Of(const uint8_t* p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

void putBe32(Bytes& out, uint32_t v)
{
    for (int k = 3; k >= 0; --k)
        out.push_back(static_cast<uint8_t>(v >> (8 * k)));
}

void pngChunk(Bytes& out, const char* type, const Bytes& body)
{
    putBe32(out, static_cast<uint32_t>(body.size()));
    Bytes typed(type, type + 4);
    typed.insert(typed.end(), body.begin(), body.end());
    out.insert(out.end(), typed.begin(), typed.end());
    putBe32(out, crc32Of(typed.data(), typed.size()));
}

// A PNG written by hand (stored deflate blocks), for the colour types OpenCV cannot write:
// `rows` holds height rows of width * channels samples, big-endian when 16-bit.
Bytes makePng(uint32_t width, uint32_t height, uint8_t colorType, uint8_t bitDepth, const Bytes& samples)
{
    Bytes out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    Bytes ihdr;
    putBe32(ihdr, width);
    putBe32(ihdr, height);
    ihdr.insert(ihdr.end(), {bitDepth, colorType, 0, 0, 0});
    pngChunk(out, "IHDR", ihdr);
    const size_t rowBytes = height ? samples.size() / height : 0;
    Bytes raw;
    for (uint32_t y = 0; y < height && rowBytes; ++y) {
        raw.push_back(0);  // filter: none
        raw.insert(raw.end(), samples.begin() + y * rowBytes, samples.begin() + (y + 1) * rowBytes);
    }
    Bytes z{0x78, 0x01};
    for (size_t at = 0; at < raw.size() || at == 0; at += 65535) {
        const size_t n = std::min<size_t>(65535, raw.size() - at);
        z.push_back(at + n >= raw.size() ? 1 : 0);
        z.push_back(static_cast<uint8_t>(n));
        z.push_back(static_cast<uint8_t>(n >> 8));
        z.push_back(static_cast<uint8_t>(~n));
        z.push_back(static_cast<uint8_t>(~n >> 8));
        z.insert(z.end(), raw.begin() + at, raw.begin() + at + n);
        if (raw.empty())
            break;
    }
    uint32_t a = 1, b = 0;
    for (uint8_t v : raw) {
        a = (a + v) % 65521;
        b = (b + a) % 65521;
    }
    putBe32(z, (b << 16) | a);
    pngChunk(out, "IDAT", z);
    pngChunk(out, "IEND", {});
    return out;
}

Bytes encode(const std::string& ext, const cv::Mat& image, const std::vector<int>& params = {})
{
    Bytes out;
    EXPECT_TRUE(cv::imencode(ext, image, out, params)) << ext;
    return out;
}

std::string decodeError(const Bytes& bytes, const std::string& name, const ImageLoadOptions& options = {})
{
    try {
        decodeImageRgb(bytes, name, options);
    } catch (const ImageError& e) {
        return e.what();
    }
    return "";
}

// Every hostile case checked, printed at exit for docs/reliability.md.
int g_hostileCases = 0;
struct CaseReport {
    ~CaseReport()
    {
        if (g_hostileCases)
            std::printf("hostile image inputs checked: %d\n", g_hostileCases);
    }
} g_caseReport;

void expectRefused(const Bytes& bytes, const std::string& name, const std::string& needle,
                   const ImageLoadOptions& options = {})
{
    ++g_hostileCases;
    std::string error;
    const double seconds = test::cpuSecondsOf([&] { error = decodeError(bytes, name, options); });
    EXPECT_EQ(error.rfind(name + ": ", 0), 0u) << name << ": message does not start with the name: " << error;
    EXPECT_NE(error.find(needle), std::string::npos) << name << ": " << error;
    EXPECT_LT(seconds, 2.0 * test::kCpuSlack) << name;
}

cv::Mat testPattern(int width, int height)
{
    cv::Mat m(height, width, CV_8UC3);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(x * 5), static_cast<uint8_t>(y * 7), 200);
    return m;
}

const char kCmykJpeg[] =
    "\xff\xd8\xff\xee\x00\x0e\x41\x64\x6f\x62\x65\x00\x64\x00\x00\x00\x00\x02\xff\xdb\x00\x43\x00\x03"
    "\x02\x02\x03\x02\x02\x03\x03\x03\x03\x04\x03\x03\x04\x05\x08\x05\x05\x04\x04\x05\x0a\x07\x07\x06"
    "\x08\x0c\x0a\x0c\x0c\x0b\x0a\x0b\x0b\x0d\x0e\x12\x10\x0d\x0e\x11\x0e\x0b\x0b\x10\x16\x10\x11\x13"
    "\x14\x15\x15\x15\x0c\x0f\x17\x18\x16\x14\x18\x12\x14\x15\x14\xff\xdb\x00\x43\x01\x03\x04\x04\x05"
    "\x04\x05\x09\x05\x05\x09\x14\x0d\x0b\x0d\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14"
    "\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14"
    "\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\xff\xc0\x00\x14\x08\x00\x08\x00\x08\x04\x01\x11"
    "\x00\x02\x11\x01\x03\x11\x01\x04\x11\x00\xff\xc4\x00\x15\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x08\x09\xff\xc4\x00\x14\x10\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\xff\xc4\x00\x15\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x07\x09\xff\xc4\x00\x14\x11\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\xff\xda\x00\x0e\x04\x01\x00\x02\x11\x03\x11\x04\x00\x00\x3f\x00\x44\x1c\xd2\xa9"
    "\x54\xdf\xff\xd9";

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

TEST(ImageHostile, HeaderSizesOfEveryFormat)
{
    // JPEG 2000's default 6 resolution levels need more than 32 pixels a side.
    const cv::Mat colour = testPattern(67, 43);
    cv::Mat grey;
    cv::extractChannel(colour, grey, 0);
    struct Case {
        const char* ext;
        ImageFormat format;
        bool greyInput;
    };
    const Case cases[] = {{".png", ImageFormat::Png, false},      {".jpg", ImageFormat::Jpeg, false},
                          {".bmp", ImageFormat::Bmp, false},      {".tiff", ImageFormat::Tiff, false},
                          {".webp", ImageFormat::WebP, false},    {".ppm", ImageFormat::Pnm, false},
                          {".pgm", ImageFormat::Pnm, true},       {".pam", ImageFormat::Pnm, false},
                          {".jp2", ImageFormat::Jpeg2000, false}, {".ras", ImageFormat::SunRaster, false},
                          {".hdr", ImageFormat::Radiance, false}, {".jpg", ImageFormat::Jpeg, true}};
    for (const auto& c : cases) {
        if (!cv::haveImageWriter(c.ext)) {
            std::cout << "note: this OpenCV cannot write " << c.ext << ", not tested\n";
            continue;
        }
        const Bytes bytes = encode(c.ext, c.greyInput ? grey : colour);
        const auto header = probeImageHeader(bytes.data(), bytes.size());
        EXPECT_EQ(header.format, c.format) << c.ext;
        EXPECT_EQ(header.width, 67) << c.ext;
        EXPECT_EQ(header.height, 43) << c.ext;
        EXPECT_FALSE(header.truncated) << c.ext;
        const auto rgb = decodeImageRgb(bytes, std::string("pattern") + c.ext);
        EXPECT_EQ(rgb.type(), CV_8UC3) << c.ext;
        EXPECT_EQ(rgb.cols, 67) << c.ext;
        EXPECT_EQ(rgb.rows, 43) << c.ext;
        // Every prefix of the header probes without reading past its end (ASan checks this build).
        for (size_t n = 0; n < std::min<size_t>(bytes.size(), 80); ++n) {
            const Bytes prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
            probeImageHeader(prefix.data(), prefix.size());
        }
    }
    // Lossless WebP has a VP8L header.
    const Bytes lossless = encode(".webp", colour, {cv::IMWRITE_WEBP_QUALITY, 101});
    const auto header = probeImageHeader(lossless.data(), lossless.size());
    EXPECT_EQ(header.width, 67);
    EXPECT_EQ(header.height, 43);
    EXPECT_EQ(decodeImageRgb(lossless, "lossless.webp").at<cv::Vec3b>(3, 4), cv::Vec3b(200, 21, 20));
}

TEST(ImageHostile, DecompressionBombsAreRefusedFromTheHeader)
{
    // PNG: a valid stream whose IHDR claims 30000 x 30000 (900 Mpx, over the default limit).
    expectRefused(makePng(30000, 30000, 0, 8, {}), "bomb.png",
                  "the image is 30000x30000 pixels, more than the limit of 178956970");

    // JPEG: a real JPEG whose frame header is patched to 65000 x 65000.
    Bytes jpg = encode(".jpg", testPattern(16, 16));
    for (size_t i = 2; i + 8 < jpg.size(); ++i)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = jpg[i + 7] = 0xfd;
            jpg[i + 6] = jpg[i + 8] = 0xe8;
            break;
        }
    expectRefused(jpg, "bomb.jpg", "65000x65000 pixels");

    // BMP stored top-down (negative height).
    Bytes bmp = encode(".bmp", testPattern(4, 4));
    const int32_t w = 100000, h = -100000;
    std::memcpy(&bmp[18], &w, 4);
    std::memcpy(&bmp[22], &h, 4);
    expectRefused(bmp, "bomb.bmp", "100000x100000 pixels");

    // TIFF (little- and big-endian) with LONG width/length tags.
    for (bool little : {true, false}) {
        Bytes tiff = little ? Bytes{'I',  'I', 42, 0, 8, 0, 0, 0, 2, 0, 0, 1,    4,    0, 1, 0, 0, 0, 0x70,
                                    0x11, 1,   0,  1, 1, 4, 0, 1, 0, 0, 0, 0x70, 0x11, 1, 0, 0, 0, 0, 0}
                            : Bytes{'M', 'M',  0,    42, 0, 0, 0, 8, 0, 2, 1, 0, 0, 4,    0,    0, 0, 1, 0,
                                    1,   0x11, 0x70, 1,  1, 0, 4, 0, 0, 0, 1, 0, 1, 0x11, 0x70, 0, 0, 0, 0};
        expectRefused(tiff, little ? "bomb-le.tif" : "bomb-be.tif", "70000x70000 pixels");
    }

    // WebP extended header: 16384 x 16384 canvas.
    Bytes webp{'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E',  'B',  'P', 'V',  'P',  '8',
               'X', 10,  0,   0,   0,  0, 0, 0, 0,   0xff, 0x3f, 0,   0xff, 0x3f, 0};
    expectRefused(webp, "bomb.webp", "16384x16384 pixels");

    // Text headers and the rarer formats OpenCV also decodes.
    const std::string pnm = "P6\n# a comment\n50000 50000\n255\n";
    expectRefused(Bytes(pnm.begin(), pnm.end()), "bomb.ppm", "50000x50000 pixels");
    const std::string pam = "P7\nWIDTH 40000\nHEIGHT 40000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n";
    expectRefused(Bytes(pam.begin(), pam.end()), "bomb.pam", "40000x40000 pixels");
    const std::string hdr = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 40000 +X 30000\n";
    expectRefused(Bytes(hdr.begin(), hdr.end()), "bomb.hdr", "30000x40000 pixels");
    Bytes ras{0x59, 0xa6, 0x6a, 0x95, 0, 0, 0x9c, 0x40, 0, 0, 0x9c, 0x40, 0, 0, 0, 24};
    ras.resize(32, 0);
    expectRefused(ras, "bomb.ras", "40000x40000 pixels");
    Bytes j2k{0xff, 0x4f, 0xff, 0x51, 0, 41, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    expectRefused(j2k, "bomb.j2k", "65536x65536 pixels");
    // Sizes beyond 32 bits do not overflow the pixel count.
    const std::string giant = "P5\n1099511627775 1099511627775\n255\n";
    expectRefused(Bytes(giant.begin(), giant.end()), "giant.pgm", "more than the limit");

    // A configured limit refuses an ordinary image by its header, with its size in the message.
    ImageLoadOptions tight;
    tight.maxPixels = 100;
    expectRefused(encode(".png", testPattern(11, 10)), "small.png", "11x10 pixels, more than the limit of 100", tight);
    tight.maxPixels = 110;
    EXPECT_EQ(decodeImageRgb(encode(".png", testPattern(11, 10)), "small.png", tight).cols, 11);
    if (!std::getenv("FEC_MAX_IMAGE_PIXELS"))
        EXPECT_EQ(defaultMaxImagePixels(), 178'956'970);
}

TEST(ImageHostile, GreyAlphaSixteenBitAndCmyk)
{
    // Grey + alpha (PNG colour type 4), which OpenCV hands over as BGRA: composited over white.
    auto ga = decodeImageRgb(makePng(2, 1, 4, 8, {0, 128, 200, 255}), "ga.png");
    ASSERT_EQ(ga.type(), CV_8UC3);
    EXPECT_NEAR(ga.at<cv::Vec3b>(0, 0)[0], 127, 1);
    EXPECT_EQ(ga.at<cv::Vec3b>(0, 0)[0], ga.at<cv::Vec3b>(0, 0)[2]);
    EXPECT_EQ(ga.at<cv::Vec3b>(0, 1), cv::Vec3b(200, 200, 200));
    // 16-bit grey + alpha: transparent white and opaque black.
    auto ga16 = decodeImageRgb(makePng(2, 1, 4, 16, {0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff}), "ga16.png");
    EXPECT_EQ(ga16.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));
    EXPECT_EQ(ga16.at<cv::Vec3b>(0, 1), cv::Vec3b(0, 0, 0));
    // 16-bit grey scales by 1/257: 0x8080 -> 128, 0x0101 -> 1, 0xffff -> 255.
    auto g16 = decodeImageRgb(makePng(3, 1, 0, 16, {0x80, 0x80, 0x01, 0x01, 0xff, 0xff}), "g16.png");
    EXPECT_EQ(g16.at<cv::Vec3b>(0, 0), cv::Vec3b(128, 128, 128));
    EXPECT_EQ(g16.at<cv::Vec3b>(0, 1), cv::Vec3b(1, 1, 1));
    EXPECT_EQ(g16.at<cv::Vec3b>(0, 2), cv::Vec3b(255, 255, 255));
    // 16-bit RGBA: half-transparent red over white keeps red and lightens the rest.
    auto rgba16 = decodeImageRgb(makePng(1, 1, 6, 16, {0xff, 0xff, 0, 0, 0, 0, 0x80, 0x00}), "rgba16.png");
    EXPECT_EQ(rgba16.at<cv::Vec3b>(0, 0)[0], 255);
    EXPECT_NEAR(rgba16.at<cv::Vec3b>(0, 0)[1], 127, 1);
    EXPECT_NEAR(rgba16.at<cv::Vec3b>(0, 0)[2], 127, 1);
    // 8-bit RGBA written by OpenCV: opaque pixels keep their colour exactly.
    cv::Mat bgra(4, 4, CV_8UC4, cv::Scalar(10, 20, 30, 255));
    EXPECT_EQ(decodeImageRgb(encode(".png", bgra), "opaque.png").at<cv::Vec3b>(2, 2), cv::Vec3b(30, 20, 10));
    // 1-bit PBM.
    const std::string pbm = "P4\n8 2\n\xf0\x0f";
    auto bits = decodeImageRgb(Bytes(pbm.begin(), pbm.end()), "bits.pbm");
    EXPECT_EQ(bits.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
    EXPECT_EQ(bits.at<cv::Vec3b>(0, 7), cv::Vec3b(255, 255, 255));

    // CMYK JPEG (Adobe APP14, inverted as Photoshop and ImageMagick write it) of pure red.
    const Bytes cmyk(kCmykJpeg, kCmykJpeg + sizeof kCmykJpeg - 1);
    auto red = decodeImageRgb(cmyk, "cmyk.jpg");
    ASSERT_EQ(red.cols, 8);
    const auto px = red.at<cv::Vec3b>(4, 4);
    EXPECT_GE(px[0], 250);
    EXPECT_LE(px[1], 6);
    EXPECT_LE(px[2], 6);
}

TEST(ImageHostile, ExifOrientationIsApplied)
{
    // 40 x 20, left half black, right half white.
    cv::Mat image(20, 40, CV_8UC3, cv::Scalar(0, 0, 0));
    image(cv::Rect(20, 0, 20, 20)).setTo(cv::Scalar(255, 255, 255));
    const Bytes plain = encode(".jpg", image);
    for (uint8_t orientation : {1, 3, 6, 8}) {
        // APP1 Exif: a little-endian TIFF block with one Orientation (0x0112) SHORT entry.
        const Bytes exif{'E',  'x',  'i', 'f', 0, 0, 'I', 'I', 42,          0, 8, 0, 0, 0, 1, 0,
                         0x12, 0x01, 3,   0,   1, 0, 0,   0,   orientation, 0, 0, 0, 0, 0, 0, 0};
        Bytes jpg(plain.begin(), plain.begin() + 2);
        jpg.insert(jpg.end(), {0xff, 0xe1, 0, static_cast<uint8_t>(exif.size() + 2)});
        jpg.insert(jpg.end(), exif.begin(), exif.end());
        jpg.insert(jpg.end(), plain.begin() + 2, plain.end());
        const auto dir = tempDir();
        const auto path = (dir / ("exif" + std::to_string(orientation) + ".jpg")).string();
        writeFileAtomic(path, jpg);
        const auto rgb = loadImageRgb(path);
        auto dark = [&](int y, int x) { return rgb.at<cv::Vec3b>(y, x)[0] < 60; };
        switch (orientation) {
        case 1:  // as stored
            ASSERT_EQ(rgb.size(), cv::Size(40, 20));
            EXPECT_TRUE(dark(10, 5) && !dark(10, 35));
            break;
        case 3:  // rotated 180 degrees
            ASSERT_EQ(rgb.size(), cv::Size(40, 20));
            EXPECT_TRUE(!dark(10, 5) && dark(10, 35));
            break;
        case 6:  // rotate 90 degrees clockwise to display: the left half goes to the top
            ASSERT_EQ(rgb.size(), cv::Size(20, 40));
            EXPECT_TRUE(dark(5, 10) && !dark(35, 10));
            break;
        case 8:  // 90 degrees counter-clockwise: the left half goes to the bottom
            ASSERT_EQ(rgb.size(), cv::Size(20, 40));
            EXPECT_TRUE(!dark(5, 10) && dark(35, 10));
            break;
        }
        fs::remove_all(dir);
    }
}

TEST(ImageHostile, TruncatedAndCorruptFilesOfEveryFormat)
{
    // Noise does not compress, so a cut removes pixel data, not just trailing metadata.
    cv::Mat noise(64, 96, CV_8UC3);
    cv::randu(noise, 0, 255);
    for (const char* ext : {".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm"}) {
        const Bytes full = encode(ext, noise);
        for (double fraction : {0.05, 0.5, 0.9}) {
            const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() * fraction));
            expectRefused(cut, std::string("cut") + ext, "");
        }
        // The first bytes only: the header itself is cut.
        expectRefused(Bytes(full.begin(), full.begin() + 12), std::string("stub") + ext, "truncated");
    }
    const Bytes jpg = encode(".jpg", noise);
    // Thousands of progressive scans (each re-reads the whole image in libjpeg): refused unread.
    const Bytes progressive = encode(".jpg", noise, {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
    const auto scans = probeImageHeader(progressive.data(), progressive.size()).scans;
    EXPECT_GT(scans, 3);
    EXPECT_LT(scans, 30);
    EXPECT_EQ(decodeImageRgb(progressive, "progressive.jpg").cols, 96);
    Bytes manyScans(progressive.begin(), progressive.end() - 2);
    for (int i = 0; i < 2000; ++i)  // empty scans: SOS with one component, no data
        manyScans.insert(manyScans.end(), {0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00});
    manyScans.insert(manyScans.end(), {0xff, 0xd9});
    expectRefused(manyScans, "scans.jpg", "progressive scans (more than 1000)");
    expectRefused(Bytes(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() - 200)), "cut.jpg",
                  "the JPEG data is truncated");
    // Valid headers followed by garbage.
    for (const char* ext : {".png", ".jpg", ".webp"}) {
        Bytes bad = encode(ext, noise);
        std::mt19937 rng(7);
        for (size_t i = bad.size() / 3; i < bad.size() - 2; ++i)
            bad[i] = static_cast<uint8_t>(rng());
        const std::string error = decodeError(bad, std::string("garbage") + ext);
        ++g_hostileCases;
        // Lossy codecs (libjpeg, libwebp) turn garbage entropy data into some picture; PNG's
        // filters and checksums must refuse it.
        if (std::string(ext) == ".png")
            EXPECT_NE(error.find("garbage"), std::string::npos) << ext << ": decoded silently";
    }
    expectRefused(makePng(0, 0, 0, 8, {}), "empty.png", "empty image (0x0 pixels)");
}

TEST(ImageHostile, NonImagesWithImageExtensions)
{
    auto bytesOf = [](const std::string& s) { return Bytes(s.begin(), s.end()); };
    expectRefused(bytesOf("this is not a jpeg"), "notes.jpg", "not a readable image (unknown format");
    expectRefused(bytesOf("<!DOCTYPE html><html><body>404</body></html>"), "page.png", "unknown format");
    expectRefused(bytesOf(std::string("PK\x03\x04\x14\0\0\0", 8)), "archive.png", "starts with 50 4b 03 04");
    expectRefused(bytesOf(std::string("\x80\x02}q\0.", 6)), "weights.jpg", "unknown format");
    expectRefused(bytesOf("GIF89a\x0a\0\x0a\0\0\0\0;"), "anim.png", "GIF images are not supported");
    expectRefused(bytesOf(std::string("\x76\x2f\x31\x01\x02\0\0\0", 8)), "render.exr", "OpenEXR");
    expectRefused(bytesOf("\x89PNG\r\n\x1a\nnot a chunk at all"), "sig.png", "PNG header is truncated or damaged");
    expectRefused(bytesOf("\xff\xd8garbage"), "soi.jpg", "JPEG header is truncated or damaged");
    expectRefused(bytesOf("BMxx"), "short.bmp", "BMP header");
    expectRefused(bytesOf("P6\nwide high\n255\n"), "words.ppm", "PNM header");
    expectRefused(bytesOf(std::string(1, '\0')), "nul.png", "unknown format");
    expectRefused(Bytes{}, "zero.png", "the file is empty");
}

TEST(ImageHostile, UnreadablePaths)
{
    const auto dir = tempDir();
    auto loadError = [](const std::string& path, const ImageLoadOptions& options = {}) -> std::string {
        ++g_hostileCases;
        try {
            loadImageRgb(path, options);
        } catch (const ImageError& e) {
            return e.what();
        }
        return "loaded";
    };
    const auto missing = (dir / "missing.png").string();
    EXPECT_EQ(loadError(missing), "cannot open " + missing + ": No such file or directory");
    const auto folder = (dir / "folder.png").string();
    fs::create_directories(folder);
    EXPECT_EQ(loadError(folder), folder + " is a directory");
    const auto file = (dir / "file.png").string();
    writeFileAtomic(file, encode(".png", testPattern(4, 4)));
    EXPECT_EQ(loadError(file + "/inner.png"), "cannot open " + file + "/inner.png: Not a directory");
    EXPECT_NE(loadError("/dev/zero").find("/dev/zero is not a regular file"), std::string::npos);
    ImageLoadOptions tiny;
    tiny.maxFileBytes = 10;
    EXPECT_NE(loadError(file, tiny).find(file + " is too large"), std::string::npos);

    // A FIFO must be refused at once, not block waiting for a writer.
    const auto fifo = (dir / "pipe.png").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::atomic<bool> done{false};
    std::thread unblock([&] {
        for (int i = 0; i < 50 && !done; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!done) {  // a reader is stuck in open(): let it go so that the test can fail
            const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
            if (fd >= 0)
                ::close(fd);
        }
    });
    const auto start = std::chrono::steady_clock::now();
    const std::string fifoError = loadError(fifo);
    done = true;
    unblock.join();
    EXPECT_NE(fifoError.find(fifo + " is not a regular file"), std::string::npos) << fifoError;
    // Blocked, it would wait for the 5 s unblocking thread.
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 4.0);

    const auto locked = (dir / "locked.png").string();
    writeFileAtomic(locked, encode(".png", testPattern(4, 4)));
    ::chmod(locked.c_str(), 0);
    if (::geteuid() == 0)
        std::cout << "note: running as root, permission-denied case not testable\n";
    else
        EXPECT_EQ(loadError(locked), "cannot open " + locked + ": Permission denied");

    // UTF-8 folder and file names (read as bytes, decoded from memory).
    const auto unicodeDir = dir / "\xd1\x84\xd0\xbe\xd1\x82\xd0\xbe \xe5\x86\x99\xe7\x9c\x9f";
    fs::create_directories(unicodeDir);
    const auto unicode = (unicodeDir / "K\xc3\xa4tzchen \xf0\x9f\x90\x88.jpg").string();
    writeFileAtomic(unicode, encode(".jpg", testPattern(12, 9)));
    EXPECT_EQ(loadImageRgb(unicode).size(), cv::Size(12, 9));
    // The name in a message is the path as given.
    writeFileAtomic(unicode, std::string("broken"));
    EXPECT_EQ(loadError(unicode).rfind(unicode + ": not a readable image", 0), 0u);
    fs::remove_all(dir);
}

// A little-endian 4x4 grey TIFF with two ImageWidth and two ImageLength entries (TIFF 6.0 forbids
// repeated tags; libtiff keeps the first of each and ignores the rest).
Bytes tiffWithRepeatedSize(uint32_t firstWidth, uint32_t firstHeight, uint32_t secondWidth, uint32_t secondHeight)
{
    struct Entry {
        uint16_t tag, type;
        uint32_t value;
    };
    const uint32_t pixels = 8 + 2 + 12 * 12 + 4;  // right after the directory and its next-IFD offset
    const Entry entries[] = {{256, 4, firstWidth}, {256, 4, secondWidth}, {257, 4, firstHeight}, {257, 4, secondHeight},
                             {258, 3, 8},          {259, 3, 1},           {262, 3, 1},           {273, 4, pixels},
                             {277, 3, 1},          {278, 4, 4},           {279, 4, 16},          {284, 3, 1}};
    Bytes out{'I', 'I', 42, 0, 8, 0, 0, 0, 12, 0};
    auto le = [&](uint32_t v, int bytes) {
        for (int k = 0; k < bytes; ++k)
            out.push_back(static_cast<uint8_t>(v >> (8 * k)));
    };
    for (const auto& e : entries) {
        le(e.tag, 2);
        le(e.type, 2);
        le(1, 4);
        le(e.value, 4);  // a SHORT sits in the first two bytes of the value field
    }
    le(0, 4);
    for (int i = 0; i < 16; ++i)
        out.push_back(static_cast<uint8_t>(i * 16));
    return out;
}

TEST(ImageHostile, RepeatedTiffSizeTagsAreReadLikeLibtiff)
{
    // The probe kept the LAST ImageWidth/ImageLength, libtiff the FIRST: huge first sizes followed
    // by small ones passed the pixel limit, and a 9.5 KB file decoded to 2.8 GB. The probe now
    // follows libtiff's rule, so the size judged is the size decoded.
    const Bytes bomb = tiffWithRepeatedSize(20000, 20000, 4, 4);
    auto header = probeImageHeader(bomb.data(), bomb.size());
    EXPECT_EQ(header.width, 20000);
    EXPECT_EQ(header.height, 20000);
    ImageLoadOptions limit;
    limit.maxPixels = 1'000'000;
    expectRefused(bomb, "repeated-bomb.tif",
                  "the image is 20000x20000 pixels, more than the limit of 1000000 (refused as a possible "
                  "decompression bomb",
                  limit);

    // The other order decodes: libtiff reads the 4x4 the probe saw (this pins libtiff's rule).
    const Bytes small = tiffWithRepeatedSize(4, 4, 100000, 100000);
    header = probeImageHeader(small.data(), small.size());
    EXPECT_EQ(header.width, 4);
    EXPECT_EQ(header.height, 4);
    const auto rgb = decodeImageRgb(small, "repeated.tif", limit);
    EXPECT_EQ(rgb.size(), cv::Size(4, 4));
    EXPECT_EQ(rgb.at<cv::Vec3b>(1, 2), cv::Vec3b(96, 96, 96));
}

TEST(ImageFolderHostile, BadFilesAreSkippedAndReportedNotFatal)
{
    const auto root = tempDir() / "folder";
    fs::create_directories(root / "cat");
    fs::create_directories(root / "dog");
    writeFileAtomic((root / "cat" / "1.png").string(), encode(".png", testPattern(8, 6)));
    writeFileAtomic((root / "cat" / "2.png").string(), std::string());                    // empty
    writeFileAtomic((root / "cat" / "3.jpg").string(), std::string("not a picture"));     // text
    writeFileAtomic((root / "cat" / "4.png").string(), makePng(30000, 30000, 0, 8, {}));  // bomb
    writeFileAtomic((root / "dog" / "1.png").string(), encode(".png", testPattern(5, 7)));
    writeFileAtomic((root / "dog" / "2.jpg").string(), encode(".jpg", testPattern(9, 4)));

    datasets::ImageFolder folder(root.string());
    ASSERT_EQ(folder.size(), 6);
    for (int64_t i = 0; i < folder.size(); ++i) {
        const auto sample = folder.get(i);
        EXPECT_EQ(sample.label, folder.label(i));
        EXPECT_EQ(sample.image.size(2), 3);
        if (folder.label(i) == 0)  // every cat sample is the one readable cat image
            EXPECT_EQ(sample.image.size(1), 8);
    }
    const auto bad = folder.badFiles();
    ASSERT_EQ(bad.size(), 3u);
    EXPECT_NE(bad[0].find("2.png"), std::string::npos);
    // Reading again skips the known bad files without decoding or warning again.
    EXPECT_EQ(folder.get(2).image.size(1), 8);
    EXPECT_EQ(folder.badFiles().size(), 3u);

    // Over the tolerance the folder is reported as broken (looking for a substitute for 2.png
    // meets 3.jpg and 4.png too).
    datasets::ImageFolder strict(root.string());
    strict.setBadFileTolerance(2, 0.0);
    EXPECT_EQ(strict.maxBadFiles(), 2);
    EXPECT_NO_THROW(strict.get(0));
    try {
        strict.get(1);
        FAIL() << "tolerance not applied";
    } catch (const train::DataError& e) {
        EXPECT_NE(std::string(e.what()).find(": 3 images cannot be read (more than the 2 tolerated), e.g. "),
                  std::string::npos)
            << e.what();
    }
    strict.setBadFileTolerance(10, 0.5);
    EXPECT_EQ(strict.maxBadFiles(), 10);

    // A class with no readable image at all.
    fs::remove(root / "cat" / "1.png");
    datasets::ImageFolder broken(root.string());
    try {
        broken.get(0);
        FAIL() << "a class without readable images decoded";
    } catch (const train::DataError& e) {
        EXPECT_NE(std::string(e.what()).find("no readable image left in class 'cat'"), std::string::npos) << e.what();
    }
    EXPECT_EQ(broken.get(4).label, 1);
    fs::remove_all(root.parent_path());
}

}  // namespace
}  // namespace fec::imaging
