// The concept atlas (`fec concepts`): a small real run on Fashion-MNIST, its files, determinism,
// reading back, renaming, refusals and cancellation.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "../cli/run_fec.h"
#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/explain/concepts.h"
#include "fec/imaging/image.h"
#include "fec/npy.h"
#include "fec/train/dataset.h"

namespace fec::explain {
namespace {

namespace fs = std::filesystem;
const std::string kFashion = "/usr/share/datasets/fashion-mnist";
const std::string kModel = std::string(FEC_SOURCE_DIR) + "/models/fec-fashion-128.pth.tar";

std::string readText(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <typename F> std::string thrownMessage(F&& f)
{
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

// concepts.json without its timing field.
std::string withoutSeconds(std::string text)
{
    const auto at = text.find("\"seconds\":");
    if (at != std::string::npos)
        text.erase(at, text.find('\n', at) - at);
    return text;
}

class Concepts : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        if (!train::FashionMnist::detect(kFashion) || !fs::exists(kModel))
            return;
        s_loaded = new LoadedModel(loadCheckpoint(kModel));
        s_root = new fs::path(fs::temp_directory_path() / ("fec-test-concepts-" + std::to_string(::getpid())));
        fs::create_directories(*s_root);
        s_data = new train::DatasetPtr(openAtlasData(kFashion, "test", 48, 0, s_loaded->info.classNames));
        s_atlas = new Atlas(build(options()));
        writeAtlas(*s_atlas, (*s_root / "a").string(), *s_loaded->model, c10::kCPU, *s_data);
    }
    static void TearDownTestSuite()
    {
        if (s_root) {
            std::error_code ec;
            fs::remove_all(*s_root, ec);
        }
        delete s_atlas;
        delete s_data;
        delete s_root;
        delete s_loaded;
    }
    void SetUp() override
    {
        if (!s_loaded)
            GTEST_SKIP() << "needs " << kFashion << " (scripts/install-deps.sh) and " << kModel;
    }
    static ConceptOptions options()
    {
        ConceptOptions o;
        o.k = 4;
        o.perConcept = 3;
        o.batch = 24;
        o.workers = 1;
        o.seed = 7;
        return o;
    }
    static Atlas build(const ConceptOptions& o, const train::DatasetPtr& data = {},
                       const std::atomic<bool>* cancel = nullptr, const AtlasProgress& progress = {})
    {
        return buildAtlas(*s_loaded->model, s_loaded->info, kModel, c10::kCPU, data ? data : *s_data, o, progress,
                          cancel);
    }
    static fs::path dir(const std::string& name) { return *s_root / name; }

    static LoadedModel* s_loaded;
    static fs::path* s_root;
    static train::DatasetPtr* s_data;
    static Atlas* s_atlas;
};
LoadedModel* Concepts::s_loaded = nullptr;
fs::path* Concepts::s_root = nullptr;
train::DatasetPtr* Concepts::s_data = nullptr;
Atlas* Concepts::s_atlas = nullptr;

TEST_F(Concepts, WritesTheDocumentedFilesWithTheirShapes)
{
    const auto a = dir("a");
    const auto& atlas = *s_atlas;
    ASSERT_EQ(atlas.images.size(), 48u);
    EXPECT_EQ(atlas.images.front(), "idx:0");
    EXPECT_EQ(atlas.level, 3);
    const auto segments = static_cast<int64_t>(atlas.segments.size());
    // The last level of the default model at 128 is a 4x4 grid: at most 16 segments per image.
    EXPECT_GT(segments, 48 * 2);
    EXPECT_LE(segments, 48 * 16);

    const auto assignments = npy::read((a / "assignments.npy").string());
    EXPECT_EQ(assignments.descr, "<i4");
    EXPECT_EQ(assignments.shape, (std::vector<int64_t>{segments, 4}));
    const auto centres = npy::read((a / "centres.npy").string());
    EXPECT_EQ(centres.descr, "<f4");
    EXPECT_EQ(centres.shape, (std::vector<int64_t>{4, 192}));
    const auto images = readText(a / "images.txt");
    EXPECT_EQ(std::count(images.begin(), images.end(), '\n'), 48);
    EXPECT_EQ(images.rfind("idx:0\nidx:1\n", 0), 0u);
    for (int k = 0; k < 4; ++k) {
        const auto sheet = cv::imread((a / ("concept_" + std::to_string(k) + ".png")).string());
        ASSERT_FALSE(sheet.empty()) << "concept_" << k << ".png";
        EXPECT_GT(sheet.cols, 400);
        EXPECT_GT(sheet.rows, 150);
        // contactSheetTiles is where the window finds a clicked tile: every kept segment's tile lies
        // inside the sheet, holds a drawn crop (not the white paper), and tiles do not overlap.
        const auto& summary = s_atlas->concepts[static_cast<size_t>(k)];
        const auto tiles = explain::contactSheetTiles(summary);
        ASSERT_EQ(tiles.size(), summary.typical.size() + summary.contributing.size());
        for (size_t i = 0; i < tiles.size(); ++i) {
            const cv::Rect r(tiles[i].x, tiles[i].y, tiles[i].width, tiles[i].height);
            ASSERT_EQ(r & cv::Rect(0, 0, sheet.cols, sheet.rows), r) << "tile " << i << " of concept " << k;
            const cv::Mat picture = sheet(cv::Rect(r.x, r.y, r.width, r.width));  // the square crop
            EXPECT_LT(cv::mean(picture)[0], 250.0) << "tile " << i << " of concept " << k << " is blank";
            for (size_t j = 0; j < i; ++j)
                EXPECT_EQ((r & cv::Rect(tiles[j].x, tiles[j].y, tiles[j].width, tiles[j].height)).area(), 0);
        }
    }
    // Nothing but the atlas is left beside it (no partial folder).
    for (const auto& entry : fs::directory_iterator(*s_root))
        EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();

    // Summaries: sizes add up, counts per class add up to the size, typical segments are sorted
    // by distance, contributing ones by the evidence for their image's predicted class.
    int64_t total = 0;
    for (const auto& c : atlas.concepts) {
        total += c.size;
        int64_t counted = 0;
        for (auto n : c.classCounts)
            counted += n;
        EXPECT_EQ(counted, c.size);
        if (c.size == 0)
            continue;
        EXPECT_GE(c.purity, 0.1);
        EXPECT_LE(c.purity, 1.0);
        EXPECT_GT(c.imageShare, 0.0);
        EXPECT_EQ(c.typical.size(), std::min<size_t>(3, static_cast<size_t>(c.size)));
        for (size_t i = 1; i < c.typical.size(); ++i)
            EXPECT_LE(atlas.segments[static_cast<size_t>(c.typical[i - 1])].distance,
                      atlas.segments[static_cast<size_t>(c.typical[i])].distance);
        for (size_t i = 1; i < c.contributing.size(); ++i) {
            auto support = [&](int64_t s) {
                const auto& seg = atlas.segments[static_cast<size_t>(s)];
                return atlas.evidence[s][atlas.predicted[static_cast<size_t>(seg.image)]].item<float>();
            };
            EXPECT_GE(support(c.contributing[i - 1]), support(c.contributing[i]));
        }
    }
    EXPECT_EQ(total, segments);
    // The last level's evidence is exact: per image, the segments' evidence for the predicted
    // class plus the head's bias is the logit, so their sum ranks the predicted class first.
    std::vector<std::vector<double>> sums(48, std::vector<double>(10, 0.0));
    for (int64_t i = 0; i < segments; ++i)
        for (int c = 0; c < 10; ++c)
            sums[static_cast<size_t>(atlas.segments[static_cast<size_t>(i)].image)][static_cast<size_t>(c)] +=
                atlas.evidence[i][c].item<float>();
    const auto bias = s_loaded->model->headBias().to(at::kDouble);
    for (size_t image = 0; image < 48; ++image) {
        int best = 0;
        for (int c = 1; c < 10; ++c)
            if (sums[image][static_cast<size_t>(c)] + bias[c].item<double>() >
                sums[image][static_cast<size_t>(best)] + bias[best].item<double>())
                best = c;
        EXPECT_EQ(best, atlas.predicted[image]) << "image " << image;
    }
}

TEST_F(Concepts, AssignmentsAreTheNearestCentreOfEachSegment)
{
    const auto atlas = readAtlas(dir("a").string());
    // Rerun the model on the first 8 images: each segment's own representative must be nearest
    // (by cosine) to the centre of the concept it was assigned (up to float rounding).
    std::vector<at::Tensor> inputs;
    for (int64_t i = 0; i < 8; ++i)
        inputs.push_back(imaging::prepareImage(
                             [&] {
                                 const auto s = (*s_data)->get(i).image;
                                 cv::Mat grey(static_cast<int>(s.size(0)), static_cast<int>(s.size(1)), CV_8UC1,
                                              s.data_ptr<uint8_t>());
                                 cv::Mat rgb;
                                 cv::cvtColor(grey, rgb, cv::COLOR_GRAY2RGB);
                                 return rgb;
                             }(),
                             atlas.inputSize, imaging::parsePreprocess(atlas.preprocess))
                             .tensor);
    c10::InferenceMode guard;
    TraceOptions to;
    to.blocks = false;
    const auto trace = s_loaded->model->forwardTraced(at::stack(inputs), to);
    const auto centres = atlas.centres;
    int64_t checked = 0;
    for (int b = 0; b < 8; ++b) {
        const auto pyramid = buildPyramid(trace, b);
        const auto& nonEmpty = pyramid.levels.back().nonEmpty;
        auto ids = at::tensor(std::vector<int64_t>(nonEmpty.begin(), nonEmpty.end()));
        const auto reps = trace.pools.back().representatives[b].index_select(0, ids);
        const auto nearest = nearestConcepts(atlas, reps);
        const auto cosine = at::matmul(reps / reps.norm(2, 1, true), centres.t());  // [M, K]
        std::vector<int32_t> fromFile;
        for (const auto& s : atlas.segments)
            if (s.image == b)
                fromFile.push_back(s.concept);
        ASSERT_EQ(fromFile.size(), nonEmpty.size()) << "image " << b;
        for (size_t i = 0; i < nonEmpty.size(); ++i) {
            const auto row = cosine[static_cast<int64_t>(i)];
            EXPECT_GE(row[fromFile[i]].item<float>(), row.max().item<float>() - 1e-4f) << "image " << b;
            EXPECT_GE(row[nearest[i]].item<float>(), row.max().item<float>() - 1e-6f);
            ++checked;
        }
    }
    EXPECT_GT(checked, 8);
}

TEST_F(Concepts, TheSameSeedGivesIdenticalFiles)
{
    const auto again = build(options());
    writeAtlas(again, dir("b").string(), *s_loaded->model, c10::kCPU, *s_data);
    for (const auto* file : {"assignments.npy", "centres.npy", "images.txt", "boxes.npy", "evidence.npy"})
        EXPECT_EQ(readText(dir("a") / file), readText(dir("b") / file)) << file;
    EXPECT_EQ(withoutSeconds(readText(dir("a") / "concepts.json")),
              withoutSeconds(readText(dir("b") / "concepts.json")));
    // Another seed still partitions the same segments.
    auto other = options();
    other.seed = 8;
    const auto different = build(other);
    EXPECT_EQ(different.segments.size(), s_atlas->segments.size());
}

TEST_F(Concepts, ReadsBackWhatWasWrittenAndKeepsNames)
{
    const auto back = readAtlas(dir("a").string());
    const auto& a = *s_atlas;
    EXPECT_EQ(back.modelSha1, a.modelSha1);
    EXPECT_EQ(back.images, a.images);
    EXPECT_EQ(back.labels, a.labels);
    EXPECT_EQ(back.predicted, a.predicted);
    EXPECT_EQ(back.split, "test");
    ASSERT_EQ(back.segments.size(), a.segments.size());
    for (size_t i = 0; i < a.segments.size(); ++i) {
        const auto& x = a.segments[i];
        const auto& y = back.segments[i];
        ASSERT_TRUE(x.image == y.image && x.level == y.level && x.segment == y.segment && x.concept == y.concept &&
                    x.pixels == y.pixels && x.x0 == y.x0 && x.y1 == y.y1 && x.distance == y.distance)
            << "segment " << i;
    }
    EXPECT_TRUE(at::equal(back.centres, a.centres));
    ASSERT_EQ(back.concepts.size(), 4u);
    for (size_t c = 0; c < 4; ++c) {
        EXPECT_EQ(back.concepts[c].classCounts, a.concepts[c].classCounts);
        EXPECT_EQ(back.concepts[c].typical, a.concepts[c].typical);
        EXPECT_EQ(back.concepts[c].contributing, a.concepts[c].contributing);
    }
    // The images come back in atlas order.
    const auto images = openAtlasImages(back);
    ASSERT_EQ(images->size(), 48);
    EXPECT_TRUE(at::equal(images->get(5).image, (*s_data)->get(5).image));

    fs::copy(dir("a"), dir("named"));
    const auto before = readText(dir("named") / "assignments.npy");
    const auto sheet0 = cv::imread((dir("named") / "concept_0.png").string()),
               sheet1 = cv::imread((dir("named") / "concept_1.png").string());
    writeConceptNames(dir("named").string(), {"collar", "", "sole", "strap"});
    // A renamed concept's sheet gets the name in its title line, nothing else changes; an
    // unchanged one is not rewritten.
    const auto renamed0 = cv::imread((dir("named") / "concept_0.png").string());
    ASSERT_EQ(renamed0.size(), sheet0.size());
    const cv::Rect title(0, 0, sheet0.cols, 24), rest(0, 24, sheet0.cols, sheet0.rows - 24);
    EXPECT_GT(cv::norm(renamed0(title), sheet0(title), cv::NORM_L1), 0.0);
    EXPECT_EQ(cv::norm(renamed0(rest), sheet0(rest), cv::NORM_L1), 0.0);
    EXPECT_EQ(cv::norm(cv::imread((dir("named") / "concept_1.png").string()), sheet1, cv::NORM_L1), 0.0);
    const auto named = readAtlas(dir("named").string());
    EXPECT_EQ(named.concepts[0].name, "collar");
    EXPECT_EQ(named.conceptLabel(0), "collar");
    EXPECT_EQ(named.conceptLabel(1), "concept 1");
    EXPECT_EQ(named.concepts[3].name, "strap");
    EXPECT_EQ(readText(dir("named") / "assignments.npy"), before);
    EXPECT_NE(thrownMessage([&] { writeConceptNames(dir("named").string(), {"only one"}); }).find("4 concepts"),
              std::string::npos);
}

TEST_F(Concepts, RefusesBadInputWithClearMessages)
{
    // An empty folder.
    fs::create_directories(dir("empty"));
    EXPECT_NE(thrownMessage([&] { openAtlasData(dir("empty").string(), "test", 0, 0, {}); }).find("no images"),
              std::string::npos);
    // A level that does not exist, and K larger than the number of segments.
    auto o = options();
    o.level = 4;
    EXPECT_NE(thrownMessage([&] { build(o); }).find("level 4 does not exist: the model has levels 1 to 3"),
              std::string::npos);
    // A flat folder with two pictures and one broken file: the broken one is skipped and listed.
    const auto flat = dir("flat");
    fs::create_directories(flat);
    cv::Mat shirt(28, 28, CV_8UC3, cv::Scalar(0, 0, 0));
    cv::rectangle(shirt, {6, 4}, {21, 24}, cv::Scalar(200, 200, 200), cv::FILLED);
    cv::imwrite((flat / "a.png").string(), shirt);
    cv::imwrite((flat / "b.png").string(), 255 - shirt);
    std::ofstream((flat / "broken.png").string()) << "not a png";
    o = options();
    o.k = 2;
    o.perConcept = 2;
    const auto data = openAtlasData(flat.string(), "test", 0, 0, s_loaded->info.classNames);
    ASSERT_EQ(data->size(), 3);
    const auto small = build(o, data);
    EXPECT_EQ(small.images.size(), 2u);
    ASSERT_EQ(small.skipped.size(), 1u);
    EXPECT_NE(small.skipped[0].find("broken.png"), std::string::npos) << small.skipped[0];
    EXPECT_EQ(small.labels, (std::vector<int64_t>{-1, -1}));
    o.k = 1000;
    const auto tooMany = thrownMessage([&] { build(o, data); });
    EXPECT_NE(tooMany.find("K = 1000 is larger than the"), std::string::npos) << tooMany;

    // An atlas of another model names both hashes.
    const auto other = dir("other.pth.tar");
    std::ofstream(other.string()) << "another model";
    const auto wrong = thrownMessage([&] { checkAtlasModel(*s_atlas, other.string()); });
    EXPECT_NE(wrong.find(s_atlas->modelSha1), std::string::npos) << wrong;
    EXPECT_NE(wrong.find("58a37f3e8e59"), std::string::npos) << wrong;  // SHA-1 of "another model"
    EXPECT_NO_THROW(checkAtlasModel(*s_atlas, kModel));

    // A truncated concepts.json, a truncated assignments.npy and a missing images.txt.
    fs::copy(dir("a"), dir("cut"));
    auto json = readText(dir("cut") / "concepts.json");
    std::ofstream(dir("cut") / "concepts.json", std::ios::binary | std::ios::trunc) << json.substr(0, json.size() / 2);
    auto message = thrownMessage([&] { readAtlas(dir("cut").string()); });
    EXPECT_NE(message.find("concepts.json: truncated"), std::string::npos) << message;
    std::ofstream(dir("cut") / "concepts.json", std::ios::binary | std::ios::trunc) << json;
    const auto npyBytes = readText(dir("cut") / "assignments.npy");
    std::ofstream(dir("cut") / "assignments.npy", std::ios::binary | std::ios::trunc)
        << npyBytes.substr(0, npyBytes.size() - 8);
    message = thrownMessage([&] { readAtlas(dir("cut").string()); });
    EXPECT_NE(message.find("assignments.npy"), std::string::npos) << message;
    std::ofstream(dir("cut") / "assignments.npy", std::ios::binary | std::ios::trunc) << npyBytes;
    fs::remove(dir("cut") / "images.txt");
    message = thrownMessage([&] { readAtlas(dir("cut").string()); });
    EXPECT_NE(message.find("images.txt: missing"), std::string::npos) << message;

    // A folder holding other files is never overwritten.
    fs::create_directories(dir("busy"));
    std::ofstream((dir("busy") / "notes.txt").string()) << "mine";
    message = thrownMessage([&] { writeAtlas(small, dir("busy").string(), *s_loaded->model, c10::kCPU, data); });
    EXPECT_NE(message.find("not empty"), std::string::npos) << message;
    EXPECT_EQ(readText(dir("busy") / "notes.txt"), "mine");
    // The flat folder's atlas is written from the dataset it was built from, without the broken file.
    writeAtlas(small, dir("flat-atlas").string(), *s_loaded->model, c10::kCPU, data);
    EXPECT_EQ(readText(dir("flat-atlas") / "images.txt"),
              (flat / "a.png").string() + "\n" + (flat / "b.png").string() + "\n");
    EXPECT_TRUE(fs::exists(dir("flat-atlas") / "concept_1.png"));
    // Writing again replaces the older atlas as a whole, leaving no temporary folder behind.
    fs::remove(dir("flat-atlas") / "concept_1.png");
    writeAtlas(small, dir("flat-atlas").string(), *s_loaded->model, c10::kCPU, data);
    EXPECT_TRUE(fs::exists(dir("flat-atlas") / "concept_1.png"));
    for (const auto& entry : fs::directory_iterator(*s_root))
        EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
}

TEST_F(Concepts, CancellingWritesNothing)
{
    std::atomic<bool> cancel{false};
    auto o = options();
    // Cancelled after the first batch of the reading pass.
    EXPECT_THROW(build(o, {}, &cancel,
                       [&](int64_t done, int64_t, const std::string&) {
                           if (done > 0)
                               cancel = true;
                       }),
                 AtlasCancelled);
    // Cancelled while writing: neither the folder nor a partial one is left.
    cancel = true;
    EXPECT_THROW(writeAtlas(*s_atlas, dir("cancelled").string(), *s_loaded->model, c10::kCPU, *s_data, &cancel),
                 AtlasCancelled);
    EXPECT_FALSE(fs::exists(dir("cancelled")));
    for (const auto& entry : fs::directory_iterator(*s_root))
        EXPECT_EQ(entry.path().filename().string().find("cancelled"), std::string::npos) << entry.path();
}

TEST_F(Concepts, CommandLineWritesAnAtlasAndRefusesBadLevels)
{
    const auto out = dir("cli");
    EXPECT_EQ(test::runFec({"--threads", "2", "concepts", "--checkpoint", kModel, "--data", kFashion, "--limit", "24",
                            "--k", "3", "--per-concept", "2", "--out", out.string(), "--json"}),
              0);
    const auto atlas = readAtlas(out.string());
    EXPECT_EQ(atlas.images.size(), 24u);
    EXPECT_EQ(atlas.k, 3);
    EXPECT_TRUE(fs::exists(out / "concept_2.png"));
    EXPECT_NE(test::runFec({"concepts", "--checkpoint", kModel, "--data", kFashion, "--limit", "8", "--level", "5",
                            "--out", dir("cli-bad").string()}),
              0);
    EXPECT_FALSE(fs::exists(dir("cli-bad")));
}

// An atlas of one image whose segment i belongs to concept concepts[i].
Atlas partition(const std::vector<int32_t>& concepts, int k)
{
    Atlas a;
    a.images = {"idx:0"};
    a.level = 3;
    a.k = k;
    a.concepts.resize(static_cast<size_t>(k));
    for (size_t i = 0; i < concepts.size(); ++i) {
        AtlasSegment s;
        s.level = 3;
        s.segment = static_cast<int32_t>(i);
        s.concept = concepts[i];
        a.segments.push_back(s);
    }
    return a;
}

TEST(ConceptsCompare, AdjustedRandIndexOfKnownPartitions)
{
    // The textbook values: one cluster split in two gives 4/7; a crossing partition -1/2.
    EXPECT_NEAR(compareAtlases(partition({0, 0, 1, 1}, 2), partition({0, 0, 1, 2}, 3)).adjustedRand, 4.0 / 7.0, 1e-12);
    EXPECT_NEAR(compareAtlases(partition({0, 0, 1, 1}, 2), partition({0, 1, 0, 1}, 2)).adjustedRand, -0.5, 1e-12);
    // The same partition under other ids: 1, and every concept finds its renamed self whole.
    const auto same = compareAtlases(partition({0, 0, 1, 1, 2}, 3), partition({2, 2, 0, 0, 1}, 3));
    EXPECT_DOUBLE_EQ(same.adjustedRand, 1.0);
    ASSERT_EQ(same.matches.size(), 3u);
    EXPECT_EQ(same.matches[0].match, 2);
    EXPECT_EQ(same.matches[1].match, 0);
    EXPECT_EQ(same.matches[2].match, 1);
    for (const auto& m : same.matches)
        EXPECT_DOUBLE_EQ(m.jaccard, 1.0);
    // Concept 1 of {0,0,1,1,1,1} shares 3 of its 4 segments with concept 1 of {0,0,0,1,1,1}, whose
    // union with it holds 4: Jaccard 3/4.
    const auto split = compareAtlases(partition({0, 0, 1, 1, 1, 1}, 2), partition({0, 0, 0, 1, 1, 1}, 2));
    EXPECT_EQ(split.matches[1].match, 1);
    EXPECT_EQ(split.matches[1].shared, 3);
    EXPECT_DOUBLE_EQ(split.matches[1].jaccard, 0.75);
    EXPECT_EQ(split.segments, 6);

    // Atlases of other segments or images are refused, saying why.
    EXPECT_THROW(compareAtlases(partition({0, 1}, 2), partition({0, 1, 1}, 2)), std::invalid_argument);
    auto otherImages = partition({0, 1}, 2);
    otherImages.images = {"idx:5"};
    try {
        compareAtlases(partition({0, 1}, 2), otherImages);
        ADD_FAILURE() << "atlases of different images were compared";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("different images"), std::string::npos) << e.what();
    }
}

TEST_F(Concepts, CompareCommandReportsAgreementOfTwoSeeds)
{
    auto o = options();
    o.seed = 8;
    const auto other = build(o);
    writeAtlas(other, dir("seed8").string(), *s_loaded->model, c10::kCPU, *s_data);
    const auto expected = compareAtlases(*s_atlas, other);
    testing::internal::CaptureStdout();
    const int rc = test::runFec({"concepts-compare", dir("a").string(), dir("seed8").string(), "--json"});
    const auto text = testing::internal::GetCapturedStdout();
    ASSERT_EQ(rc, 0) << text;
    const auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j["segments"], static_cast<int64_t>(s_atlas->segments.size()));
    EXPECT_NEAR(j["adjusted_rand"].get<double>(), expected.adjustedRand, 1e-12);
    ASSERT_EQ(j["concepts"].size(), 4u);
    double previous = 2;
    for (const auto& c : j["concepts"]) {
        for (const char* key : {"id", "name", "size", "match", "match_name", "shared", "jaccard"})
            EXPECT_TRUE(c.contains(key)) << key;
        EXPECT_LE(c["jaccard"].get<double>(), previous) << "most stable first";
        previous = c["jaccard"].get<double>();
    }
    // An atlas compared with itself agrees completely.
    testing::internal::CaptureStdout();
    ASSERT_EQ(test::runFec({"concepts-compare", dir("a").string(), dir("a").string(), "--json"}), 0);
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(testing::internal::GetCapturedStdout())["adjusted_rand"].get<double>(), 1.0);
    // An atlas of other images cannot be compared: non-zero exit, nothing on stdout.
    const auto fewer = openAtlasData(kFashion, "test", 16, 0, s_loaded->info.classNames);
    writeAtlas(build(options(), fewer), dir("fewer").string(), *s_loaded->model, c10::kCPU, fewer);
    testing::internal::CaptureStdout();
    EXPECT_NE(test::runFec({"concepts-compare", dir("a").string(), dir("fewer").string()}), 0);
    EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
}

}  // namespace
}  // namespace fec::explain
