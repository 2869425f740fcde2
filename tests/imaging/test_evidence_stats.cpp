// Dataset means per level for the `dataset` ablation baseline: the engine against a brute-force
// mean, the file (round trip, refusals), ablation with it, and `fec evidence-stats` / `fec explain
// --baseline dataset` end to end.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "../cli/run_fec.h"
#include "fec/analysis.h"
#include "fec/atomic_file.h"
#include "fec/checkpoint.h"
#include "fec/evidence.h"
#include "fec/explain/evidence_stats.h"
#include "fec/explain/explain.h"
#include "fec/explain/segment_evidence.h"
#include "fec/file_hash.h"
#include "fec/train/augment.h"
#include "fec/train/dataset.h"

namespace fec::explain {
namespace {

namespace fs = std::filesystem;
const std::string kFashion = "/usr/share/datasets/fashion-mnist";
const std::string kModel = std::string(FEC_SOURCE_DIR) + "/models/fec-fashion-128.pth.tar";
const std::string kSample = std::string(FEC_SOURCE_DIR) + "/resources/samples/fashion-bag-00018.png";
constexpr int kSize = 128;

bool haveData()
{
    return train::FashionMnist::detect(kFashion) && fs::exists(kModel);
}

std::string readText(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

FecModel loadDefault()
{
    auto model = loadCheckpoint(kModel).model;
    model->eval();
    return model;
}

// Fashion-MNIST with some images that cannot be read (as a corrupt file would be).
class PartlyBroken : public train::Dataset {
public:
    PartlyBroken(std::shared_ptr<train::FashionMnist> base, std::vector<int64_t> broken)
        : m_base(std::move(base)), m_broken(std::move(broken))
    {
    }
    int64_t size() const override { return m_base->size(); }
    train::Sample get(int64_t index) const override
    {
        if (std::find(m_broken.begin(), m_broken.end(), index) != m_broken.end())
            throw train::DataError("image " + std::to_string(index) + " is corrupt");
        return m_base->get(index);
    }
    int64_t label(int64_t index) const override { return m_base->label(index); }
    std::vector<std::string> classNames() const override { return m_base->classNames(); }
    std::string description() const override { return "partly broken " + m_base->description(); }
    std::string preprocess() const override { return "squash"; }

private:
    std::shared_ptr<train::FashionMnist> m_base;
    std::vector<int64_t> m_broken;
};

// The brute-force reference: one image at a time, its pyramid's non-empty positions, the pool
// output from forwardUntil, summed in float64.
struct BruteForce {
    std::vector<at::Tensor> sums;
    std::vector<int64_t> positions;
    int64_t images = 0;
    at::Tensor mean(size_t l) const { return sums[l].div(static_cast<double>(positions[l])).to(at::kFloat); }
};

BruteForce bruteForce(FecModelImpl& model, const train::Dataset& data, const std::vector<int64_t>& skip = {})
{
    c10::InferenceMode guard;
    BruteForce b;
    b.sums.assign(3, at::Tensor());
    b.positions.assign(3, 0);
    for (int64_t i = 0; i < data.size(); ++i) {
        if (std::find(skip.begin(), skip.end(), i) != skip.end())
            continue;
        const auto x = train::evalTransform(data.get(i).image, kSize, train::EvalResize::Squash).unsqueeze(0);
        TraceOptions o;
        o.blocks = false;
        const auto pyramid = buildPyramid(model.forwardTraced(x, o), 0);
        for (int level = 1; level <= 3; ++level) {
            const auto pooled = model.forwardUntil(x, level).to(at::kDouble);
            const auto flat = pooled[0].reshape({pooled.size(1), -1});
            const auto& ids = pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty;
            const auto s =
                flat.index_select(1, at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong)).sum(1);
            auto& acc = b.sums[static_cast<size_t>(level - 1)];
            acc = acc.defined() ? acc + s : s;
            b.positions[static_cast<size_t>(level - 1)] += static_cast<int64_t>(ids.size());
        }
        ++b.images;
    }
    return b;
}

void expectClose(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what)
{
    ASSERT_EQ(a.sizes(), b.sizes()) << what;
    const double diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
    EXPECT_LE(diff, tol * std::max(1.0, b.abs().max().item<double>())) << what;
}

EvidenceStats smallStats()
{
    EvidenceStats s;
    s.modelSha1 = std::string(40, 'a');
    s.data = "unit test";
    s.inputSize = kSize;
    s.preprocess = "squash";
    s.images = 3;
    s.positions = {300, 100, 40};
    s.levelMeans = {at::randn({64}), at::randn({128}), at::randn({192})};
    s.levelMeans[1][5] = 1e-30f;  // tiny and awkward values survive the text
    s.levelMeans[2][0] = -3.4028235e38f;
    return s;
}

class EvidenceStatsFiles : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_root = fs::temp_directory_path() / ("fec-evidence-stats-test-" + std::to_string(::getpid()) + "-" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(m_root);
        fs::create_directories(m_root);
    }
    void TearDown() override { fs::remove_all(m_root); }
    // A copy of the default model, so that stats written beside it stay in the temporary folder.
    std::string modelCopy(const std::string& name = "model.pth.tar")
    {
        const auto p = m_root / name;
        fs::copy_file(kModel, p);
        return p.string();
    }
    fs::path m_root;
};

TEST(EvidenceStats, EqualTheBruteForceMeanOverNonEmptyPositions)
{
    if (!haveData())
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto model = loadDefault();
    train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 7);
    std::vector<std::pair<int64_t, int64_t>> calls;
    // Batches of 3: two full and one partial; decoding on two threads.
    const auto stats = computeEvidenceStats(
        *model, data, kSize, train::EvalResize::Squash, 3,
        [&](int64_t done, int64_t total) { calls.emplace_back(done, total); }, nullptr, 2);
    const auto expected = bruteForce(*model, data);
    EXPECT_EQ(stats.images, 7);
    EXPECT_EQ(stats.skipped, 0);
    EXPECT_EQ(stats.inputSize, kSize);
    EXPECT_EQ(stats.preprocess, "squash");
    EXPECT_TRUE(stats.modelSha1.empty()) << "the caller knows the model file";
    ASSERT_EQ(stats.levelMeans.size(), 3u);
    EXPECT_EQ(stats.positions, expected.positions);
    for (size_t l = 0; l < 3; ++l) {
        EXPECT_EQ(stats.levelMeans[l].scalar_type(), at::kFloat);
        EXPECT_EQ(stats.levelMeans[l].numel(), model->config().dims[l + 1]);
        expectClose(stats.levelMeans[l], expected.mean(l), 1e-5, "level " + std::to_string(l + 1));
    }
    // Level 1 of Fashion-MNIST at 128 has empty clusters: only non-empty positions are averaged.
    EXPECT_LT(stats.positions[0], 7 * 16 * 16);
    ASSERT_EQ(calls.size(), 3u);
    EXPECT_EQ(calls.back(), std::make_pair(int64_t{7}, int64_t{7}));

    // Decoding in the calling thread and one batch give the same means.
    const auto serial = computeEvidenceStats(*model, data, kSize, train::EvalResize::Squash, 64, {}, nullptr, 0);
    for (size_t l = 0; l < 3; ++l)
        expectClose(serial.levelMeans[l], stats.levelMeans[l], 1e-6, "serial level " + std::to_string(l + 1));
}

TEST(EvidenceStats, UnreadableImagesAreSkippedAndCounted)
{
    if (!haveData())
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto model = loadDefault();
    auto base = std::make_shared<train::FashionMnist>(kFashion, train::FashionMnist::Split::Test, 6);
    PartlyBroken data(base, {0, 4});
    const auto stats = computeEvidenceStats(*model, data, kSize, train::EvalResize::Squash, 4);
    EXPECT_EQ(stats.images, 4);
    EXPECT_EQ(stats.skipped, 2);
    ASSERT_EQ(stats.skippedExamples.size(), 2u);
    EXPECT_NE(stats.skippedExamples[0].find("is corrupt"), std::string::npos);
    const auto expected = bruteForce(*model, *base, {0, 4});
    EXPECT_EQ(stats.positions, expected.positions);
    for (size_t l = 0; l < 3; ++l)
        expectClose(stats.levelMeans[l], expected.mean(l), 1e-5, "level " + std::to_string(l + 1));

    // Nothing readable at all is an error, not a file of zeros.
    PartlyBroken none(base, {0, 1, 2, 3, 4, 5});
    try {
        computeEvidenceStats(*model, none, kSize, train::EvalResize::Squash, 4);
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no image"), std::string::npos) << e.what();
    }
}

TEST(EvidenceStats, CancelStopsWithoutResult)
{
    if (!haveData())
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto model = loadDefault();
    train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 8);
    std::atomic<bool> cancel{false};
    int batches = 0;
    auto progress = [&](int64_t, int64_t) {
        ++batches;
        cancel = true;  // after the first batch
    };
    try {
        computeEvidenceStats(*model, data, kSize, train::EvalResize::Squash, 2, progress, &cancel);
        FAIL() << "expected cancellation";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "cancelled");
    }
    EXPECT_EQ(batches, 1);
}

TEST_F(EvidenceStatsFiles, FileRoundTripIsExact)
{
    const auto s = smallStats();
    const auto path = (m_root / "stats.json").string();
    writeEvidenceStats(s, path);
    const auto r = readEvidenceStats(path);
    EXPECT_EQ(r.modelSha1, s.modelSha1);
    EXPECT_EQ(r.data, s.data);
    EXPECT_EQ(r.inputSize, s.inputSize);
    EXPECT_EQ(r.preprocess, s.preprocess);
    EXPECT_EQ(r.images, s.images);
    EXPECT_EQ(r.positions, s.positions);
    ASSERT_EQ(r.levelMeans.size(), 3u);
    for (size_t l = 0; l < 3; ++l)
        EXPECT_TRUE(at::equal(r.levelMeans[l], s.levelMeans[l])) << "level " << l + 1 << ": bit for bit";
    const auto j = nlohmann::json::parse(readText(path));
    EXPECT_EQ(j["format"], "fec-evidence-stats");
    EXPECT_EQ(j["version"], kEvidenceStatsVersion);
    EXPECT_EQ(j["levels"][2]["dims"], 192);
    EXPECT_EQ(j["levels"][0]["positions"], 300);
    EXPECT_EQ(datasetMeanFor(r, 2).numel(), 128);
    EXPECT_THROW(datasetMeanFor(r, 0), std::out_of_range);
    EXPECT_THROW(datasetMeanFor(r, 4), std::out_of_range);
    EXPECT_EQ(evidenceStatsPathFor("/m/x.pth.tar"), "/m/x.pth.tar.evidence-stats.json");

    // Stats without the model's identity are not written.
    auto noSha = s;
    noSha.modelSha1.clear();
    EXPECT_THROW(writeEvidenceStats(noSha, (m_root / "x.json").string()), std::invalid_argument);
    EXPECT_FALSE(fs::exists(m_root / "x.json"));
}

// Reading `path` fails with a message that names it and contains `part`.
void expectRefused(const std::string& path, const std::string& part)
{
    try {
        readEvidenceStats(path);
        ADD_FAILURE() << "expected " << path << " to be refused";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(path), std::string::npos) << what;
        EXPECT_NE(what.find(part), std::string::npos) << what;
    }
}

TEST_F(EvidenceStatsFiles, TruncatedOrMalformedFilesAreRefusedByName)
{
    const auto path = (m_root / "stats.json").string();
    writeEvidenceStats(smallStats(), path);
    const auto text = readText(path);
    expectRefused((m_root / "missing.json").string(), "no such");
    writeFileAtomic(path, text.substr(0, text.size() / 2));
    expectRefused(path, "truncated or malformed");
    writeFileAtomic(path, std::string());
    expectRefused(path, "truncated or malformed");
    writeFileAtomic(path, std::string("[1, 2]"));
    expectRefused(path, "not a JSON object");
    auto j = nlohmann::json::parse(text);
    auto edit = [&](const std::function<void(nlohmann::json&)>& f, const std::string& part) {
        auto k = j;
        f(k);
        writeFileAtomic(path, k.dump());
        expectRefused(path, part);
    };
    edit([](auto& k) { k["format"] = "fec-atlas"; }, "format");
    edit([](auto& k) { k.erase("model_sha1"); }, "model_sha1");
    edit([](auto& k) { k["model_sha1"] = "xyz"; }, "model_sha1");
    edit([](auto& k) { k["levels"][1]["mean"].erase(0); }, "level 2");
    edit([](auto& k) { k["levels"][2]["mean"][3] = "a"; }, "level 3");
    edit([](auto& k) { k["levels"] = nlohmann::json::array(); }, "no levels");
    edit([](auto& k) { k["version"] = kEvidenceStatsVersion + 1; }, "newer");
}

TEST_F(EvidenceStatsFiles, StatsOfAnotherModelOrOtherWidthsAreRefused)
{
    if (!fs::exists(kModel))
        GTEST_SKIP() << "needs " << kModel;
    auto model = loadDefault();
    const auto checkpoint = modelCopy();
    EXPECT_FALSE(loadEvidenceStatsFor(checkpoint, *model).has_value()) << "no file: nothing, not an error";

    auto s = smallStats();
    const auto sha = fileSha1(checkpoint);
    const auto path = evidenceStatsPathFor(checkpoint);
    writeEvidenceStats(s, path);  // another model's hash
    try {
        loadEvidenceStatsFor(checkpoint, *model);
        FAIL() << "expected a refusal";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(s.modelSha1), std::string::npos) << what;
        EXPECT_NE(what.find(sha), std::string::npos) << what;
        EXPECT_NE(what.find("another model"), std::string::npos) << what;
    }

    s.modelSha1 = sha;
    s.levelMeans[2] = at::zeros({100});
    writeEvidenceStats(s, path);
    try {
        loadEvidenceStatsFor(checkpoint, *model);
        FAIL() << "expected a refusal";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("level 3"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("192"), std::string::npos) << e.what();
    }
    s.levelMeans.pop_back();
    s.positions.pop_back();
    writeEvidenceStats(s, path);
    EXPECT_THROW(loadEvidenceStatsFor(checkpoint, *model), std::runtime_error);

    s.levelMeans.push_back(at::zeros({192}));
    s.positions.push_back(1);
    writeEvidenceStats(s, path);
    const auto loaded = loadEvidenceStatsFor(checkpoint, *model);
    ASSERT_TRUE(loaded.has_value());
    EXPECT_EQ(loaded->modelSha1, sha);
}

TEST(EvidenceStats, TheShippedFileBelongsToTheDefaultModel)
{
    if (!fs::exists(kModel))
        GTEST_SKIP() << "needs " << kModel;
    // models/<default>.evidence-stats.json (Fashion-MNIST train, 60,000 images) is installed beside
    // the model; retraining the model without recomputing it fails here.
    auto model = loadDefault();
    const auto stats = loadEvidenceStatsFor(kModel, *model);
    ASSERT_TRUE(stats.has_value()) << evidenceStatsPathFor(kModel) << " is missing: run `fec evidence-stats "
                                   << "--data /usr/share/datasets/fashion-mnist --split train`";
    EXPECT_EQ(stats->inputSize, kSize);
    EXPECT_EQ(stats->preprocess, "squash");
    EXPECT_GE(stats->images, 10000);
}

TEST(EvidenceStats, DatasetBaselineAblationEqualsEditingWithTheMean)
{
    if (!haveData())
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    auto loaded = loadCheckpoint(kModel);
    auto& model = loaded.model;
    const auto& info = loaded.info;
    model->eval();
    train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 4);
    const auto stats = computeEvidenceStats(*model, data, kSize, train::EvalResize::Squash, 4);

    // The explained sample, ablated level by level through segmentEvidence with the stats.
    ExplainOptions eo;
    eo.blocks = false;
    const auto e = explainImage(*model, info, c10::Device(c10::kCPU), kSample, eo);
    EvidenceOptions options;
    options.target = e.top[0].index;
    options.ablationOptions.baseline = AblationBaseline::Dataset;
    options.datasetMeans = stats.levelMeans;
    const auto report = segmentEvidence(*model, c10::Device(c10::kCPU), e, options);

    c10::InferenceMode guard;
    const auto x = e.prepared.tensor.unsqueeze(0);
    const auto base = model->forward(x)[0];
    size_t row = 0;
    for (int level = 1; level <= 3; ++level) {
        const auto pooled = model->forwardUntil(x, level).contiguous();
        const int64_t w = pooled.size(3);
        const auto mean = datasetMeanFor(stats, level);
        const auto& ids = e.pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty;
        for (size_t i = 0; i < ids.size(); ++i, ++row) {
            ASSERT_LT(row, report.segments.size());
            const auto& s = report.segments[row];
            ASSERT_EQ(s.level, level);
            ASSERT_EQ(s.segment, ids[i]);
            // Brute force: this one position replaced by the dataset mean, the rest rerun.
            auto edited = pooled.clone();
            for (int64_t d = 0; d < pooled.size(1); ++d)
                edited[0][d][ids[i] / w][ids[i] % w] = mean[d];
            const double expected = (base - model->forwardFrom(level, edited)[0])[options.target].item<double>();
            EXPECT_NEAR(s.effect, expected, 1e-4 * std::max(1.0, std::abs(expected)))
                << "level " << level << " segment " << ids[i];
        }
    }
    EXPECT_EQ(row, report.segments.size());

    // Several classes of one image share each level's ablation through the cache: the effects of
    // a second class match an uncached run exactly, and the cache holds every class.
    std::vector<at::Tensor> cache;
    options.effectsCache = &cache;
    segmentEvidence(*model, c10::Device(c10::kCPU), e, options);
    ASSERT_EQ(cache.size(), 3u);
    EXPECT_EQ(cache[2].size(1), model->config().numClasses);
    options.target = e.top[1].index;
    const auto cached = segmentEvidence(*model, c10::Device(c10::kCPU), e, options);
    options.effectsCache = nullptr;
    const auto fresh = segmentEvidence(*model, c10::Device(c10::kCPU), e, options);
    ASSERT_EQ(cached.segments.size(), fresh.segments.size());
    for (size_t i = 0; i < fresh.segments.size(); ++i)
        EXPECT_DOUBLE_EQ(cached.segments[i].effect, fresh.segments[i].effect) << "segment row " << i;

    // The SegmentAblator itself uses exactly the given mean.
    AblationOptions ao;
    ao.baseline = AblationBaseline::Dataset;
    ao.datasetMean = datasetMeanFor(stats, 2);
    SegmentAblator ablator(*model, x, 2, e.pyramid.levels[1].nonEmpty, ao);
    EXPECT_TRUE(at::equal(ablator.baseline(), stats.levelMeans[1]));
    // Another level's mean (wrong width) is refused.
    ao.datasetMean = datasetMeanFor(stats, 3);
    EXPECT_THROW(SegmentAblator(*model, x, 2, e.pyramid.levels[1].nonEmpty, ao), std::invalid_argument);
}

TEST_F(EvidenceStatsFiles, CliWritesStatsThatExplainUses)
{
    if (!haveData())
        GTEST_SKIP() << "needs " << kFashion << " and " << kModel;
    const auto checkpoint = modelCopy();
    const auto statsPath = evidenceStatsPathFor(checkpoint);

    // Missing: explain says what to run.
    testing::internal::CaptureStderr();
    const int missing =
        test::runFec({"--threads", "2", "explain", "--checkpoint", checkpoint, "--out", (m_root / "out0").string(),
                      "--format", "", "--evidence", "--baseline", "dataset", kSample});
    const auto err = testing::internal::GetCapturedStderr();
    EXPECT_NE(missing, 0);
    EXPECT_NE(err.find("fec evidence-stats --checkpoint " + checkpoint + " --data"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(m_root / "out0" / "fashion-bag-00018")) << "refused before any image";

    testing::internal::CaptureStdout();
    const int rc = test::runFec({"--threads", "2", "evidence-stats", "--checkpoint", checkpoint, "--data", kFashion,
                                 "--limit", "10", "--batch", "4", "--json"});
    const auto text = testing::internal::GetCapturedStdout();
    ASSERT_EQ(rc, 0) << text;
    const auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j["images"], 10);
    EXPECT_EQ(j["skipped"], 0);
    EXPECT_EQ(j["size"], kSize);
    EXPECT_EQ(j["model_sha1"], fileSha1(checkpoint));
    ASSERT_EQ(j["levels"].size(), 3u);
    EXPECT_EQ(j["levels"][2]["dims"], 192);
    ASSERT_TRUE(fs::exists(statsPath));
    EXPECT_EQ(fs::path(j["out"].get<std::string>()), fs::path(statsPath));
    const auto written = readEvidenceStats(statsPath);
    EXPECT_EQ(written.images, 10);
    // The same means as the engine on the same images.
    {
        auto model = loadDefault();
        train::FashionMnist data(kFashion, train::FashionMnist::Split::Test, 10);
        const auto direct = computeEvidenceStats(*model, data, kSize, train::EvalResize::Squash, 5);
        for (size_t l = 0; l < 3; ++l)
            expectClose(written.levelMeans[l], direct.levelMeans[l], 1e-6, "level " + std::to_string(l + 1));
    }

    // Explain with the dataset baseline: effects differ from the per-image mean baseline.
    auto explainWith = [&](const std::string& baseline, const std::string& out,
                           const std::vector<std::string>& extra = {}) {
        std::vector<std::string> args = {"--threads", "2",        "explain", "--checkpoint", checkpoint,   "--out",
                                         out,         "--format", "",        "--evidence",   "--baseline", baseline};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(kSample);
        return test::runFec(args);
    };
    ASSERT_EQ(explainWith("dataset", (m_root / "d").string()), 0);
    ASSERT_EQ(explainWith("mean", (m_root / "m").string()), 0);
    const auto dir = fs::path("fashion-bag-00018");
    const auto summary = nlohmann::json::parse(readText(m_root / "d" / dir / "summary.json"));
    EXPECT_EQ(summary["evidence"][0]["baseline"], "dataset");
    const auto tag = summary["evidence"][0]["files"][1].get<std::string>();
    const auto withDataset = readText(m_root / "d" / dir / tag), withMean = readText(m_root / "m" / dir / tag);
    ASSERT_FALSE(withDataset.empty());
    EXPECT_NE(withDataset, withMean);

    // --evidence-stats FILE: another place; a file of another model is refused naming both hashes.
    fs::copy_file(statsPath, m_root / "elsewhere.json");
    fs::remove(statsPath);
    ASSERT_EQ(
        explainWith("dataset", (m_root / "e").string(), {"--evidence-stats", (m_root / "elsewhere.json").string()}), 0);
    EXPECT_EQ(readText(m_root / "e" / dir / tag), withDataset);
    auto other = written;
    other.modelSha1 = std::string(40, 'b');
    writeEvidenceStats(other, (m_root / "other.json").string());
    testing::internal::CaptureStderr();
    EXPECT_NE(explainWith("dataset", (m_root / "o").string(), {"--evidence-stats", (m_root / "other.json").string()}),
              0);
    const auto otherErr = testing::internal::GetCapturedStderr();
    EXPECT_NE(otherErr.find(std::string(40, 'b')), std::string::npos) << otherErr;
    EXPECT_NE(otherErr.find(fileSha1(checkpoint)), std::string::npos) << otherErr;
}

}  // namespace
}  // namespace fec::explain
