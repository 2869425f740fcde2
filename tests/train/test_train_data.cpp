// Data side of training: IDX files, datasets and splits, augmentation, the loader, batch
// sharding, the optimizer and schedule, and TensorBoard event files.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <zlib.h>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>

#include "fec/datasets/image_folder.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"
#include "fec/train/loader.h"
#include "fec/train/optim.h"
#include "fec/train/random.h"
#include "fec/train/tfevents.h"
#include "train_test_util.h"

namespace fec::train {
namespace {

using test::TempDir;

void writeBytes(const std::string& path, const std::vector<uint8_t>& bytes)
{
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> readBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A raw (uncompressed) IDX file of unsigned bytes.
std::vector<uint8_t> idx(const std::vector<int>& dims, uint8_t fill = 7)
{
    std::vector<uint8_t> out{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
    size_t total = 1;
    for (int d : dims) {
        out.push_back(static_cast<uint8_t>(d >> 24));
        out.push_back(static_cast<uint8_t>(d >> 16));
        out.push_back(static_cast<uint8_t>(d >> 8));
        out.push_back(static_cast<uint8_t>(d));
        total *= static_cast<size_t>(d);
    }
    out.resize(out.size() + total, fill);
    return out;
}

template <typename F> std::string errorOf(F&& f)
{
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

TEST(Idx, ReadsRawFilesAndLimits)
{
    TempDir dir;
    writeBytes(dir.file("a-idx3-ubyte"), idx({5, 2, 3}, 9));
    auto all = readIdx(dir.file("a-idx3-ubyte"));
    EXPECT_EQ(all.dims, (std::vector<int64_t>{5, 2, 3}));
    EXPECT_EQ(all.data.size(), 30u);
    auto two = readIdx(dir.file("a-idx3-ubyte"), 2);
    EXPECT_EQ(two.dims[0], 2);
    EXPECT_EQ(two.data.size(), 12u);
}

TEST(Idx, BadMagicTruncationAndTypeErrorsNameTheFile)
{
    TempDir dir;
    auto good = idx({4, 2, 2});
    auto bad = good;
    bad[0] = 0x1f;
    writeBytes(dir.file("bad-magic"), bad);
    auto msg = errorOf([&] { readIdx(dir.file("bad-magic")); });
    EXPECT_NE(msg.find(dir.file("bad-magic")), std::string::npos) << msg;
    EXPECT_NE(msg.find("magic"), std::string::npos) << msg;

    auto shortData = good;
    shortData.resize(shortData.size() - 3);
    writeBytes(dir.file("short"), shortData);
    msg = errorOf([&] { readIdx(dir.file("short")); });
    EXPECT_NE(msg.find(dir.file("short")), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

    auto floats = good;
    floats[2] = 0x0d;
    writeBytes(dir.file("floats"), floats);
    msg = errorOf([&] { readIdx(dir.file("floats")); });
    EXPECT_NE(msg.find("0x0d"), std::string::npos) << msg;

    writeBytes(dir.file("header-only"), {0, 0, 8});
    msg = errorOf([&] { readIdx(dir.file("header-only")); });
    EXPECT_NE(msg.find(dir.file("header-only")), std::string::npos) << msg;

    msg = errorOf([&] { readIdx(dir.file("missing.gz")); });
    EXPECT_NE(msg.find(dir.file("missing.gz")), std::string::npos) << msg;
}

TEST(Idx, TruncatedGzipNamesTheFile)
{
    FEC_REQUIRE_FASHION_MNIST();
    TempDir dir;
    auto bytes = readBytes(test::fashionMnistDir() + "/t10k-labels-idx1-ubyte.gz");
    ASSERT_GT(bytes.size(), 1000u);
    bytes.resize(bytes.size() / 2);
    writeBytes(dir.file("t10k-labels-idx1-ubyte.gz"), bytes);
    const auto msg = errorOf([&] { readIdx(dir.file("t10k-labels-idx1-ubyte.gz")); });
    EXPECT_NE(msg.find(dir.file("t10k-labels-idx1-ubyte.gz")), std::string::npos) << msg;
    EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("corrupt") != std::string::npos) << msg;
}

// A gzip'd IDX file whose header gives `dims` followed by `dataBytes` zero bytes: about 1000:1,
// so that a few kilobytes on disk claim or hold hundreds of megabytes.
void writeGzipIdx(const std::string& path, const std::vector<uint32_t>& dims, uint64_t dataBytes)
{
    gzFile out = gzopen(path.c_str(), "wb1");
    ASSERT_NE(out, nullptr) << path;
    std::vector<uint8_t> header{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
    for (uint32_t d : dims)
        for (int shift = 24; shift >= 0; shift -= 8)
            header.push_back(static_cast<uint8_t>(d >> shift));
    gzwrite(out, header.data(), static_cast<unsigned>(header.size()));
    const std::vector<uint8_t> zeros(1 << 20, 0);
    for (uint64_t left = dataBytes; left > 0;) {
        const auto n = static_cast<unsigned>(std::min<uint64_t>(left, zeros.size()));
        gzwrite(out, zeros.data(), n);
        left -= n;
    }
    gzclose(out);
}

long peakRssMiB()
{
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024;
}

TEST(IdxHostile, GzipBombIsRefusedFromItsHeaderNamingTheFile)
{
    // The header claims 3.35 GB: the buffer used to grow with the data until a bare std::bad_alloc.
    TempDir dir;
    const auto path = dir.file("train-images-idx3-ubyte.gz");
    writeGzipIdx(path, {4275000, 28, 28}, 16u << 20);
    const long before = peakRssMiB();
    const auto msg = errorOf([&] { readIdx(path); });
    EXPECT_EQ(msg.rfind(path + ": the IDX header claims 4275000 x 28 x 28 bytes, more than the limit of 268435456 "
                               "bytes (256 MiB)",
                        0),
              0u)
        << msg;
    EXPECT_LT(peakRssMiB() - before, 32);
    // Four dimensions of 2^32 - 1 do not overflow the product.
    writeGzipIdx(path, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0);
    EXPECT_NE(errorOf([&] { readIdx(path); }).find("more than the limit of 268435456 bytes"), std::string::npos);
    // The limit is on what is read: the first items of a large file can still be taken.
    writeGzipIdx(path, {4275000, 28, 28}, 16u << 20);
    const auto first = readIdx(path, 1000);
    EXPECT_EQ(first.dims, (std::vector<int64_t>{1000, 28, 28}));
    EXPECT_EQ(first.data.size(), 784000u);
}

// In a child process: reads `path` with 64 MiB of address space to spare; exits 3 after printing
// the DataError, 0 when the file was read. The child made `path` in a folder of its own (the
// test body runs again there) and removes it, as no destructor runs.
[[noreturn]] void readIdxWithLittleMemory(const std::string& path)
{
    std::ifstream status("/proc/self/status");
    std::string line;
    rlim_t used = 0;
    while (std::getline(status, line))
        if (line.rfind("VmSize:", 0) == 0)
            used = std::stoull(line.substr(7)) * 1024;
    const rlim_t most = used + (rlim_t(64) << 20);
    const rlimit limit{most, most};
    ::setrlimit(RLIMIT_AS, &limit);
    int code = 0;
    try {
        readIdx(path);
    } catch (const DataError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        code = 3;
    }
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(path).parent_path(), ec);
    std::_Exit(code);
}

TEST(IdxHostile, OutOfMemoryIsReportedNamingTheFile)
{
    // 200 MiB, under the IDX limit, read with 64 MiB of address space to spare: the std::bad_alloc
    // comes back as a DataError that names the file. Run in a fresh process (death-test machinery)
    // so that the address-space limit touches nothing else.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    TempDir dir;
    const auto path = dir.file("big-idx3-ubyte.gz");
    writeGzipIdx(path, {200, 1024, 1024}, 200u << 20);
    EXPECT_EXIT(readIdxWithLittleMemory(path), ::testing::ExitedWithCode(3),
                "big-idx3-ubyte.gz: out of memory while reading the IDX data");
}

TEST(FashionMnistData, ReadsImagesLabelsAndNames)
{
    FEC_REQUIRE_FASHION_MNIST();
    ASSERT_TRUE(FashionMnist::detect(test::fashionMnistDir()));
    FashionMnist test(test::fashionMnistDir(), FashionMnist::Split::Test, 100);
    EXPECT_EQ(test.size(), 100);
    EXPECT_EQ(test.classNames().size(), 10u);
    EXPECT_EQ(test.classNames()[9], "Ankle boot");
    EXPECT_EQ(test.preprocess(), "squash");
    auto s = test.get(0);
    EXPECT_EQ(s.image.sizes(), (at::IntArrayRef{28, 28, 1}));
    EXPECT_EQ(s.image.scalar_type(), at::kByte);
    EXPECT_EQ(s.label, 9);  // the first t10k image is an ankle boot
    EXPECT_GT(s.image.max().item<int>(), 100);
    // Grey is replicated to three channels and upscaled to the training size.
    auto x = evalTransform(s.image, 64, EvalResize::Squash);
    EXPECT_EQ(x.sizes(), (at::IntArrayRef{3, 64, 64}));
    auto unnormalised =
        x * at::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1}) + at::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1});
    EXPECT_LT((unnormalised[0] - unnormalised[1]).abs().max().item<double>(), 1e-5);
    EXPECT_LT((unnormalised[1] - unnormalised[2]).abs().max().item<double>(), 1e-5);
}

TEST(FashionMnistData, MismatchedImageAndLabelFilesAreReported)
{
    TempDir dir;
    writeBytes(dir.file("train-images-idx3-ubyte"), idx({6, 28, 28}));
    writeBytes(dir.file("train-labels-idx1-ubyte"), idx({5}, 1));
    const auto msg = errorOf([&] { FashionMnist(dir.path(), FashionMnist::Split::Train); });
    EXPECT_NE(msg.find("6 images"), std::string::npos) << msg;
    EXPECT_NE(msg.find("5 labels"), std::string::npos) << msg;
}

TEST(Datasets, SplitsAreDisjointCompleteAndSeeded)
{
    TempDir dir;
    writeBytes(dir.file("train-images-idx3-ubyte"), idx({50, 4, 4}));
    writeBytes(dir.file("train-labels-idx1-ubyte"), idx({50}, 3));
    auto base = std::make_shared<FashionMnist>(dir.path(), FashionMnist::Split::Train);
    auto [train, val] = splitDataset(base, 0.2, 7);
    EXPECT_EQ(train->size(), 40);
    EXPECT_EQ(val->size(), 10);
    auto* t = dynamic_cast<const SubsetDataset*>(train.get());
    auto* v = dynamic_cast<const SubsetDataset*>(val.get());
    ASSERT_TRUE(t && v);
    std::set<int64_t> all(t->indices().begin(), t->indices().end());
    for (auto i : v->indices())
        EXPECT_TRUE(all.insert(i).second) << "index " << i << " in both parts";
    EXPECT_EQ(all.size(), 50u);
    auto again = splitDataset(base, 0.2, 7);
    EXPECT_EQ(dynamic_cast<const SubsetDataset*>(again.second.get())->indices(), v->indices());
    auto other = splitDataset(base, 0.2, 8);
    EXPECT_NE(dynamic_cast<const SubsetDataset*>(other.second.get())->indices(), v->indices());
    EXPECT_THROW(splitDataset(base, 0.0, 1), std::invalid_argument);
}

TEST(ImageFolderData, ClassesFromFoldersAndValidationFollowsTrainingClasses)
{
    TempDir dir;
    const std::vector<std::string> classes{"cat", "dog"};
    for (const auto& split : {"train", "val"})
        for (size_t c = 0; c < classes.size(); ++c) {
            const auto folder = std::filesystem::path(dir.path()) / split / classes[c];
            std::filesystem::create_directories(folder);
            for (int i = 0; i < 3; ++i) {
                cv::Mat image(20 + i, 30, CV_8UC3, cv::Scalar(c ? 255 : 0, 0, c ? 0 : 255));  // BGR
                cv::imwrite((folder / ("img" + std::to_string(i) + (i % 2 ? ".png" : ".jpg"))).string(), image);
            }
        }
    datasets::ImageFolder train((std::filesystem::path(dir.path()) / "train").string());
    EXPECT_EQ(train.classNames(), classes);
    EXPECT_EQ(train.size(), 6);
    auto s = train.get(0);
    EXPECT_EQ(s.label, 0);
    EXPECT_EQ(s.image.size(2), 3);
    // "cat" images are pure red in RGB.
    EXPECT_GT(s.image.select(2, 0).to(at::kFloat).mean().item<double>(), 200);
    EXPECT_LT(s.image.select(2, 2).to(at::kFloat).mean().item<double>(), 50);
    EXPECT_EQ(train.get(5).label, 1);
    datasets::ImageFolder val((std::filesystem::path(dir.path()) / "val").string(), {"dog", "cat"});
    EXPECT_EQ(val.classNames()[0], "dog");
    EXPECT_EQ(val.label(0), 0);  // dog's images come first in the given class order
    EXPECT_THROW(datasets::ImageFolder((std::filesystem::path(dir.path()) / "val").string(), {"cat"}), DataError);
    EXPECT_TRUE(datasets::ImageFolder::looksLikeImageFolder((std::filesystem::path(dir.path()) / "train").string()));
    EXPECT_FALSE(datasets::ImageFolder::looksLikeImageFolder(dir.path() + "/nothing"));
}

TEST(Augment, RandomResizedCropStaysInsideAndCoversTheScaleRange)
{
    AugmentOptions o;
    Rng rng(1);
    double smallest = 1, largest = 0;
    for (int i = 0; i < 500; ++i) {
        auto b = randomResizedCropBox(300, 200, o, rng);
        ASSERT_GE(b.x0, 0);
        ASSERT_GE(b.y0, 0);
        ASSERT_LE(b.x1, 300);
        ASSERT_LE(b.y1, 200);
        ASSERT_GT(b.x1, b.x0);
        const double area = (b.x1 - b.x0) * (b.y1 - b.y0) / (300.0 * 200.0);
        smallest = std::min(smallest, area);
        largest = std::max(largest, area);
    }
    EXPECT_LT(smallest, 0.15);
    EXPECT_GT(largest, 0.7);
}

TEST(Augment, TrainTransformIsDeterministicPerSeedAndFlips)
{
    auto image = at::arange(40 * 50 * 3, at::kInt).remainder(251).to(at::kByte).view({40, 50, 3});
    AugmentOptions o;
    o.size = 32;
    o.eraseProb = 0.5;
    auto a = trainTransform(image, o, 42), b = trainTransform(image, o, 42), c = trainTransform(image, o, 43);
    EXPECT_EQ(a.sizes(), (at::IntArrayRef{3, 32, 32}));
    EXPECT_TRUE(at::equal(a, b));
    EXPECT_FALSE(at::equal(a, c));
    // Without crop and with a certain flip, the output is the mirrored resize.
    AugmentOptions plain;
    plain.size = 32;
    plain.randomCrop = false;
    plain.hflip = 0;
    AugmentOptions flipped = plain;
    flipped.hflip = 1;
    auto p = trainTransform(image, plain, 1), f = trainTransform(image, flipped, 1);
    EXPECT_TRUE(at::allclose(p.flip(2), f));
}

TEST(Augment, ResamplingKeepsAConstantImageAndDownscalesSmoothly)
{
    auto flat = at::full({64, 48, 3}, 128, at::kByte);
    auto out = resampleBox(flat, {0, 0, 48, 64}, 17, 23, false);
    EXPECT_LT((out - 128.0 / 255.0).abs().max().item<double>(), 1e-5);
    auto cubic = resampleBox(flat, {0, 0, 48, 64}, 17, 23, true);
    EXPECT_LT((cubic - 128.0 / 255.0).abs().max().item<double>(), 1e-5);
    // A one-pixel checkerboard shrunk 4x averages to grey (antialiasing), not to aliasing stripes.
    auto checker = (at::arange(64).view({64, 1}) + at::arange(64).view({1, 64})).remainder(2).mul(255).to(at::kByte);
    auto small = resampleBox(checker.unsqueeze(2), {0, 0, 64, 64}, 16, 16, false);
    EXPECT_LT((small - 0.5).abs().max().item<double>(), 0.05);
}

TEST(Augment, MixupAndCutmixMixTargetsConsistently)
{
    auto images = at::randn({8, 3, 16, 16});
    auto labels = at::arange(8, at::kLong);
    MixOptions o;
    o.mixupAlpha = 0.8;
    o.cutmixAlpha = 1.0;
    o.smoothing = 0.1;
    int mixedCount = 0;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        auto x = images.clone();
        bool mixed = false;
        auto t = mixBatch(x, labels, 10, o, seed, &mixed);
        EXPECT_LT((t.sum(1) - 1).abs().max().item<double>(), 1e-5);
        if (mixed) {
            ++mixedCount;
            // Sample i is mixed with sample 7 - i: the target mass sits on those two classes.
            for (int i = 0; i < 8; ++i)
                EXPECT_GT(t[i][i].item<double>() + t[i][7 - i].item<double>(), 0.89);
        }
    }
    EXPECT_GT(mixedCount, 15);
    auto target = smoothOneHot(labels, 10, 0.1);
    EXPECT_NEAR(target[3][3].item<double>(), 0.91, 1e-6);
    EXPECT_NEAR(target[3][4].item<double>(), 0.01, 1e-6);
}

class CountingDataset : public Dataset {
public:
    explicit CountingDataset(int64_t n) : m_n(n) {}
    int64_t size() const override { return m_n; }
    Sample get(int64_t i) const override
    {
        return {at::full({8, 8, 1}, static_cast<uint8_t>(i % 256), at::kByte), i % 3};
    }
    int64_t label(int64_t i) const override { return i % 3; }
    std::vector<std::string> classNames() const override { return {"a", "b", "c"}; }
    std::string description() const override { return "counting"; }

private:
    int64_t m_n;
};

TEST(Loader, SameBatchesWhateverTheWorkerCount)
{
    auto data = std::make_shared<CountingDataset>(100);
    AugmentOptions o;
    o.size = 32;
    o.eraseProb = 0.3;
    SampleTransform transform = [o](const Sample& s, uint64_t seed) { return trainTransform(s.image, o, seed); };
    auto batches = trainBatches(epochOrder(100, 3, 0), 10, 0, 1);
    ASSERT_EQ(batches.size(), 10u);
    std::vector<Batch> reference;
    {
        Loader loader(data, batches, transform, 99, 0);
        while (auto b = loader.next())
            reference.push_back(*b);
    }
    for (int workers : {1, 3}) {
        Loader loader(data, batches, transform, 99, workers);
        size_t k = 0;
        while (auto b = loader.next()) {
            ASSERT_LT(k, reference.size());
            EXPECT_EQ(b->indices, reference[k].indices);
            EXPECT_TRUE(at::equal(b->images, reference[k].images))
                << "batch " << k << " with " << workers << " workers";
            EXPECT_TRUE(at::equal(b->labels, reference[k].labels));
            ++k;
        }
        EXPECT_EQ(k, reference.size());
    }
}

TEST(Loader, WorkerErrorsReachTheCaller)
{
    class Failing : public CountingDataset {
    public:
        Failing() : CountingDataset(20) {}
        Sample get(int64_t i) const override
        {
            if (i == 13)
                throw DataError("sample13.png: not a readable image");
            return CountingDataset::get(i);
        }
    };
    auto data = std::make_shared<Failing>();
    SampleTransform transform = [](const Sample& s, uint64_t) {
        return evalTransform(s.image, 32, EvalResize::Squash);
    };
    Loader loader(data, evalBatches(20, 4, 0, 1), transform, 0, 2);
    EXPECT_THROW(
        {
            while (loader.next()) {
            }
        },
        DataError);
}

TEST(Sharding, RanksTakeDisjointShardsWhoseUnionIsTheSingleProcessBatch)
{
    auto order = epochOrder(103, 5, 2);
    auto single = trainBatches(order, 8, 0, 1);
    auto r0 = trainBatches(order, 4, 0, 2), r1 = trainBatches(order, 4, 1, 2);
    ASSERT_EQ(r0.size(), r1.size());
    ASSERT_EQ(r0.size(), single.size());  // 103 / 8 = 12 steps either way
    for (size_t k = 0; k < single.size(); ++k) {
        std::multiset<int64_t> a(single[k].begin(), single[k].end()), b(r0[k].begin(), r0[k].end());
        b.insert(r1[k].begin(), r1[k].end());
        EXPECT_EQ(a, b) << "step " << k;
    }
    // Evaluation shards count every sample exactly once.
    std::multiset<int64_t> seen;
    for (int r = 0; r < 3; ++r)
        for (const auto& batch : evalBatches(10, 3, r, 3))
            seen.insert(batch.begin(), batch.end());
    EXPECT_EQ(seen.size(), 10u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 10u);
    EXPECT_NE(epochOrder(50, 1, 0), epochOrder(50, 1, 1));
    EXPECT_EQ(epochOrder(50, 1, 4), epochOrder(50, 1, 4));
}

TEST(Optimizer, AdamWMatchesTorchAndSkipsParametersWithoutGradient)
{
    // One scalar through two steps of torch.optim.AdamW(lr=0.1, weight_decay=0.5), by hand.
    auto w = at::full({2, 1}, 1.0, at::kDouble).set_requires_grad(true);
    auto bias = at::full({2}, 1.0, at::kDouble).set_requires_grad(true);
    auto untouched = at::full({2, 2}, 3.0, at::kDouble).set_requires_grad(true);
    AdamWOptions options;
    options.weightDecay = 0.5;
    AdamW adam({{"layer.weight", w}, {"layer.bias", bias}, {"other.weight", untouched}}, options);
    EXPECT_TRUE(adam.slots()[0].decay);
    EXPECT_FALSE(adam.slots()[1].decay);
    double p = 1.0, m = 0, v = 0;
    for (int step = 1; step <= 2; ++step) {
        const double g = 2.0 * p;  // d(p^2)/dp
        w.mutable_grad() = at::full({2, 1}, g, at::kDouble);
        bias.mutable_grad() = at::full({2}, g, at::kDouble);
        adam.step(0.1);
        p *= 1 - 0.1 * 0.5;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        const double mh = m / (1 - std::pow(0.9, step)), vh = std::sqrt(v) / std::sqrt(1 - std::pow(0.999, step));
        p -= 0.1 * mh / (vh + 1e-8);
        EXPECT_NEAR(w[0][0].item<double>(), p, 1e-12) << "step " << step;
        adam.zeroGrad();
    }
    EXPECT_FALSE(w.grad().defined());
    // The bias skipped weight decay; the parameter without a gradient did not move at all.
    EXPECT_GT(bias[0].item<double>(), w[0][0].item<double>());
    EXPECT_EQ(untouched.sum().item<double>(), 12.0);
    EXPECT_EQ(adam.slots()[2].step, 0);
}

TEST(Optimizer, DecayRuleFollowsTimm)
{
    EXPECT_TRUE(decays("network.0.0.mlp.fc1.weight", at::zeros({4, 4})));
    EXPECT_FALSE(decays("network.0.0.mlp.fc1.bias", at::zeros({4})));
    EXPECT_FALSE(decays("network.0.0.layer_scale_1", at::zeros({4})));
    EXPECT_FALSE(decays("network.0.0.token_mixer.sim_alpha", at::zeros({1})));
    EXPECT_FALSE(decays("norm.weight", at::zeros({4})));
}

TEST(Optimizer, CosineScheduleWithWarmup)
{
    CosineSchedule s;
    s.baseLr = 1e-3;
    s.minLr = 1e-5;
    s.warmupLr = 1e-6;
    s.warmupSteps = 10;
    s.totalSteps = 110;
    EXPECT_DOUBLE_EQ(s.lrAt(0), 1e-6);
    EXPECT_NEAR(s.lrAt(5), 1e-6 + 0.5 * (1e-3 - 1e-6), 1e-15);
    EXPECT_DOUBLE_EQ(s.lrAt(10), 1e-3);
    EXPECT_NEAR(s.lrAt(60), 1e-5 + 0.5 * (1e-3 - 1e-5), 1e-12);
    EXPECT_NEAR(s.lrAt(110), 1e-5, 1e-15);
    for (int64_t k = 11; k < 110; ++k)
        EXPECT_LT(s.lrAt(k), s.lrAt(k - 1));
}

TEST(Optimizer, EmaMovesTowardsTheModelAndClippingBoundsTheNorm)
{
    FecModel model(test::tinyConfig());
    ModelEma ema(*model, 0.9);
    {
        at::NoGradGuard noGrad;
        for (auto& p : model->parameters())
            p.add_(1.0);
    }
    ema.update();
    auto m = model->named_parameters(), e = ema.model()->named_parameters();
    const auto& key = m.begin()->key();
    EXPECT_LT((*e.find(key) - (*m.find(key) - 0.9)).abs().max().item<double>(), 1e-6);
    std::vector<at::Tensor> params;
    for (auto& p : model->parameters()) {
        p.mutable_grad() = at::full_like(p, 10.0);
        params.push_back(p);
    }
    const double before = clipGradNorm(params, 1.0);
    EXPECT_GT(before, 1.0);
    double total = 0;
    for (auto& p : params)
        total += p.grad().pow(2).sum().item<double>();
    EXPECT_NEAR(std::sqrt(total), 1.0, 1e-4);
}

TEST(TfEvents, Crc32cKnownValuesAndMasking)
{
    const std::string digits = "123456789";
    EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
    EXPECT_EQ(crc32c("", 0), 0u);
    const std::string zeros(32, '\0');
    EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
    const uint32_t crc = 0x12345678u;
    EXPECT_EQ(maskCrc(crc), (((crc >> 15) | (crc << 17)) + 0xa282ead8u));
}

TEST(TfEvents, WrittenRecordsDecodeWithTagsStepsAndCrcs)
{
    TempDir dir;
    std::string path;
    {
        EventWriter writer(dir.path());
        path = writer.path();
        writer.write(1, {{"train/loss", 2.5f}, {"train/lr", 1e-3f}}, 1000.5);
        writer.write(300000000000LL, {{"val/top1", 87.25f}});
        writer.flush();
    }
    EXPECT_NE(std::filesystem::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
    auto events = readEventFile(path);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].fileVersion, "brain.Event:2");
    EXPECT_GT(events[0].wallTime, 1.6e9);
    EXPECT_EQ(events[1].step, 1);
    EXPECT_DOUBLE_EQ(events[1].wallTime, 1000.5);
    ASSERT_EQ(events[1].scalars.size(), 2u);
    EXPECT_EQ(events[1].scalars[0].first, "train/loss");
    EXPECT_FLOAT_EQ(events[1].scalars[0].second, 2.5f);
    EXPECT_EQ(events[1].scalars[1].first, "train/lr");
    EXPECT_EQ(events[2].step, 300000000000LL);
    EXPECT_FLOAT_EQ(events[2].scalars[0].second, 87.25f);

    // One flipped payload byte fails the payload CRC and names the file and record.
    auto bytes = readBytes(path);
    bytes[bytes.size() - 8] ^= 0x40;
    writeBytes(path, bytes);
    const auto msg = errorOf([&] { readEventFile(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("CRC"), std::string::npos) << msg;
}

TEST(TfEvents, TensorBoardReaderAgreesWhenInstalled)
{
    if (std::system("/usr/bin/python3 -c 'import tensorboard' >/dev/null 2>&1") != 0 &&
        std::system("/usr/bin/python3 -c 'import tensorflow' >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "neither tensorboard nor tensorflow is importable by /usr/bin/python3";
    TempDir dir;
    std::string path;
    {
        EventWriter writer(dir.path());
        path = writer.path();
        writer.write(7, {{"train/loss", 1.25f}});
        writer.flush();
    }
    const std::string script = dir.file("read.py");
    std::ofstream(script)
        << "import sys\n"
           "try:\n"
           "    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader\n"
           "    events = list(EventFileLoader(sys.argv[1]).Load())\n"
           "    values = [(e.step, v.tag, v.simple_value if v.HasField('simple_value') else None)"
           " for e in events for v in e.summary.value]\n"
           "except ImportError:\n"
           "    import tensorflow as tf\n"
           "    values = [(e.step, v.tag, v.simple_value) for r in tf.compat.v1.io.tf_record_iterator(sys.argv[1])"
           " for e in [tf.compat.v1.Event.FromString(r)] for v in e.summary.value]\n"
           "ok = any(s == 7 and t == 'train/loss' and (x is None or abs(x - 1.25) < 1e-6) for s, t, x in values)\n"
           "sys.exit(0 if ok else 1)\n";
    EXPECT_EQ(std::system(("/usr/bin/python3 " + script + " " + path).c_str()), 0);
}

}  // namespace
}  // namespace fec::train
