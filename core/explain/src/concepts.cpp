#include "fec/explain/concepts.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fec/analysis.h"
#include "fec/atomic_file.h"
#include "fec/datasets/image_folder.h"
#include "fec/evidence.h"
#include "fec/file_hash.h"
#include "fec/imaging/image.h"
#include "fec/imaging/render.h"
#include "fec/npy.h"
#include "fec/text.h"
#include "fec/train/loader.h"
#include "fec/train/random.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace fec::explain {

namespace {

constexpr const char* kFormat = "fec-concept-atlas";
constexpr int kVersion = 1;
constexpr int64_t kUnreadable = -1000;  // label of a sample that could not be decoded

// A dataset whose images have stable names for images.txt.
class NamedDataset : public train::Dataset {
public:
    virtual std::string imageName(int64_t index) const = 0;
    virtual std::string path() const = 0;
    virtual std::string split() const { return {}; }
};

// Fashion-MNIST samples of one split, by their index in the split ("idx:<index>").
class IdxImages : public NamedDataset {
public:
    IdxImages(std::shared_ptr<const train::FashionMnist> base, std::string folder, std::string split,
              std::vector<int64_t> indices)
        : m_base(std::move(base)), m_folder(std::move(folder)), m_split(std::move(split)), m_indices(std::move(indices))
    {
    }
    int64_t size() const override { return static_cast<int64_t>(m_indices.size()); }
    train::Sample get(int64_t index) const override { return m_base->get(m_indices.at(static_cast<size_t>(index))); }
    int64_t label(int64_t index) const override { return m_base->label(m_indices.at(static_cast<size_t>(index))); }
    std::vector<std::string> classNames() const override { return m_base->classNames(); }
    std::string description() const override { return m_base->description(); }
    std::string preprocess() const override { return m_base->preprocess(); }
    std::string imageName(int64_t index) const override
    {
        return "idx:" + std::to_string(m_indices.at(static_cast<size_t>(index)));
    }
    std::string path() const override { return m_folder; }
    std::string split() const override { return m_split; }

private:
    std::shared_ptr<const train::FashionMnist> m_base;
    std::string m_folder, m_split;
    std::vector<int64_t> m_indices;
};

// Image files decoded with OpenCV; an unreadable file throws DataError naming it (the atlas
// skips it) instead of being replaced by another image.
class FileImages : public NamedDataset {
public:
    FileImages(std::string root, std::vector<std::string> files, std::vector<int64_t> labels,
               std::vector<std::string> classes)
        : m_root(std::move(root)), m_files(std::move(files)), m_labels(std::move(labels)), m_classes(std::move(classes))
    {
    }
    int64_t size() const override { return static_cast<int64_t>(m_files.size()); }
    train::Sample get(int64_t index) const override
    {
        const auto& file = m_files.at(static_cast<size_t>(index));
        cv::Mat rgb;
        try {
            rgb = imaging::loadImageRgb(file);
        } catch (const std::exception& e) {
            throw train::DataError(e.what());
        }
        train::Sample s;
        s.image = at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone();
        s.label = label(index);
        return s;
    }
    int64_t label(int64_t index) const override { return m_labels.at(static_cast<size_t>(index)); }
    std::vector<std::string> classNames() const override { return m_classes; }
    std::string description() const override
    {
        return "image files (" + std::to_string(m_files.size()) + " images, " + printablePath(m_root) + ")";
    }
    std::string preprocess() const override { return "crop"; }
    std::string imageName(int64_t index) const override { return m_files.at(static_cast<size_t>(index)); }
    std::string path() const override { return m_root; }

private:
    std::string m_root;
    std::vector<std::string> m_files;
    std::vector<int64_t> m_labels;
    std::vector<std::string> m_classes;
};

// Decoding failures become an empty sample labelled kUnreadable, remembered with their reason,
// so that the loader never aborts the pass.
class SkippingDataset : public train::Dataset {
public:
    explicit SkippingDataset(train::DatasetPtr base) : m_base(std::move(base)) {}
    int64_t size() const override { return m_base->size(); }
    train::Sample get(int64_t index) const override
    {
        try {
            return m_base->get(index);
        } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_errors[index] = e.what();
            train::Sample s;
            s.label = kUnreadable;
            return s;
        }
    }
    int64_t label(int64_t index) const override { return m_base->label(index); }
    std::vector<std::string> classNames() const override { return m_base->classNames(); }
    std::string description() const override { return m_base->description(); }
    std::string preprocess() const override { return m_base->preprocess(); }
    std::string error(int64_t index) const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto it = m_errors.find(index);
        return it == m_errors.end() ? std::string("unreadable") : it->second;
    }

private:
    train::DatasetPtr m_base;
    mutable std::mutex m_mutex;
    mutable std::map<int64_t, std::string> m_errors;
};

bool isImageFile(const fs::path& p)
{
    static const std::set<std::string> kExtensions = {".png",  ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                                                      ".webp", ".ppm", ".pgm",  ".pbm", ".pnm"};
    auto ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return kExtensions.count(ext) > 0;
}

// Sample image ([H, W, C] uint8 or float in [0, 1]) as an 8-bit RGB picture.
cv::Mat sampleRgb(const at::Tensor& image)
{
    auto t = image.scalar_type() == at::kByte ? image : (image.clamp(0, 1) * 255).round().to(at::kByte);
    t = t.contiguous();
    const int h = static_cast<int>(t.size(0)), w = static_cast<int>(t.size(1));
    const int c = t.dim() == 3 ? static_cast<int>(t.size(2)) : 1;
    cv::Mat src(h, w, c == 1 ? CV_8UC1 : CV_8UC3, t.data_ptr<uint8_t>());
    cv::Mat rgb;
    if (c == 1)
        cv::cvtColor(src, rgb, cv::COLOR_GRAY2RGB);
    else
        rgb = src.clone();
    return rgb;
}

int levelCountOf(const FecModelImpl& model)
{
    return static_cast<int>(model.config().dims.size()) - 1;
}

std::string conceptsJsonPath(const std::string& dir)
{
    return (fs::path(dir) / "concepts.json").string();
}

// concepts.json parsed; throws naming the file when it is truncated or not JSON.
json readConceptsJson(const std::string& path)
{
    const auto bytes = readFileBytes(path, 1ull << 31);
    try {
        return json::parse(bytes.begin(), bytes.end());
    } catch (const json::parse_error& e) {
        throw std::runtime_error(printablePath(path) + ": truncated or not JSON (" + e.what() + ")");
    }
}

void checkCancel(const std::atomic<bool>* cancel)
{
    if (cancel && cancel->load())
        throw AtlasCancelled();
}

// Nearest of the L2-normalised `centres` ([K, D] float32 contiguous) to the normalised row `v`,
// by the largest dot product (ties: the lower id); `distance` is the L2 distance.
int32_t nearest(const float* v, const float* centres, int64_t k, int64_t d, float* distance)
{
    int32_t best = 0;
    double bestDot = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < k; ++c) {
        double dot = 0;
        const float* row = centres + c * d;
        for (int64_t i = 0; i < d; ++i)
            dot += static_cast<double>(v[i]) * row[i];
        if (dot > bestDot) {
            bestDot = dot;
            best = static_cast<int32_t>(c);
        }
    }
    if (distance)
        *distance = static_cast<float>(std::sqrt(std::max(0.0, 2.0 - 2.0 * bestDot)));
    return best;
}

void normaliseRows(float* data, int64_t rows, int64_t d)
{
    for (int64_t r = 0; r < rows; ++r) {
        float* v = data + r * d;
        double sq = 0;
        for (int64_t i = 0; i < d; ++i)
            sq += static_cast<double>(v[i]) * v[i];
        const double norm = std::sqrt(sq);
        if (norm > 0)
            for (int64_t i = 0; i < d; ++i)
                v[i] = static_cast<float>(v[i] / norm);
    }
}

json toJson(const Atlas& a)
{
    json j;
    j["format"] = kFormat;
    j["version"] = kVersion;
    j["model"] = {{"file", a.modelFile}, {"sha1", a.modelSha1}};
    j["data"] = {{"path", a.data}, {"split", a.split}, {"images", a.images.size()}, {"skipped", a.skipped}};
    j["settings"] = {{"level", a.level},           {"levels", a.levels},         {"k", a.k},
                     {"input_size", a.inputSize},  {"preprocess", a.preprocess}, {"seed", a.seed},
                     {"per_concept", a.perConcept}};
    j["segments"] = a.segments.size();
    j["fitted_on"] = a.fitted;
    j["dims"] = a.centres.defined() ? a.centres.size(1) : 0;
    j["class_names"] = a.classNames;
    j["labels"] = a.labels;
    j["predicted"] = a.predicted;
    json concepts = json::array();
    for (const auto& c : a.concepts) {
        json o;
        o["id"] = c.id;
        o["name"] = c.name;
        o["size"] = c.size;
        o["image_share"] = c.imageShare;
        o["purity"] = c.purity;
        o["class_counts"] = c.classCounts;
        o["mean_evidence"] = c.meanEvidence;
        o["typical"] = c.typical;
        o["contributing"] = c.contributing;
        concepts.push_back(o);
    }
    j["concepts"] = concepts;
    j["seconds"] = a.seconds;
    return j;
}

template <typename T> npy::Array npyArray(const std::string& descr, std::vector<int64_t> shape, const T* data)
{
    npy::Array a;
    a.descr = descr;
    a.shape = std::move(shape);
    const auto n =
        static_cast<size_t>(std::accumulate(a.shape.begin(), a.shape.end(), int64_t{1}, std::multiplies<>()));
    a.bytes.resize(n * sizeof(T));
    if (n)
        std::memcpy(a.bytes.data(), data, a.bytes.size());
    return a;
}

// One tile of a contact sheet: the segment's crop with its outline, and a caption.
struct Tile {
    cv::Mat picture;  // tile x tile RGB
    std::string name, label;
};

constexpr int kTile = 112, kCaption = 30, kGap = 4, kColumns = 8, kHeader = 24;

// The layout of a contact sheet with sections of `counts` tiles: a title line, then per section a
// heading line and rows of kColumns tiles (each kTile square with a kCaption caption below).
struct SheetLayout {
    std::vector<int> headingY;                 // top of each section's heading line
    std::vector<std::vector<cv::Rect>> tiles;  // per section, caption included
    int width = kColumns * (kTile + kGap) + kGap, height = 0;
};

SheetLayout sheetLayout(const std::vector<size_t>& counts)
{
    SheetLayout layout;
    int y = kHeader;
    for (auto count : counts) {
        layout.headingY.push_back(y);
        y += kHeader;
        layout.tiles.emplace_back();
        for (size_t i = 0; i < count; ++i) {
            const int col = static_cast<int>(i % kColumns), row = static_cast<int>(i / kColumns);
            layout.tiles.back().emplace_back(kGap + col * (kTile + kGap), y + row * (kTile + kCaption + kGap), kTile,
                                             kTile + kCaption);
        }
        y += std::max<int>(1, static_cast<int>((count + kColumns - 1) / kColumns)) * (kTile + kCaption + kGap);
    }
    layout.height = y + kGap;
    return layout;
}

// The title line of a concept's contact sheet.
std::string sheetTitle(const std::string& label, int64_t size, double purity)
{
    std::ostringstream title;
    title << label << ": " << size << " segments, purity " << std::fixed << std::setprecision(2) << purity;
    return title.str();
}

void drawSheetTitle(cv::Mat& sheet, const std::string& title)
{
    cv::rectangle(sheet, cv::Rect(0, 0, sheet.cols, kHeader), cv::Scalar(255, 255, 255), cv::FILLED);
    cv::putText(sheet, title, {kGap, 17}, cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
}

cv::Mat contactSheet(const std::string& title, const std::vector<std::pair<std::string, std::vector<Tile>>>& sections)
{
    std::vector<size_t> counts;
    for (const auto& s : sections)
        counts.push_back(s.second.size());
    const auto layout = sheetLayout(counts);
    cv::Mat sheet(layout.height, layout.width, CV_8UC3, cv::Scalar(255, 255, 255));
    const auto font = cv::FONT_HERSHEY_SIMPLEX;
    drawSheetTitle(sheet, title);
    for (size_t s = 0; s < sections.size(); ++s) {
        const auto& [heading, tiles] = sections[s];
        cv::putText(sheet, heading, {kGap, layout.headingY[s] + 16}, font, 0.42, cv::Scalar(60, 60, 60), 1,
                    cv::LINE_AA);
        for (size_t i = 0; i < tiles.size(); ++i) {
            const int x0 = layout.tiles[s][i].x, y0 = layout.tiles[s][i].y;
            tiles[i].picture.copyTo(sheet(cv::Rect(x0, y0, kTile, kTile)));
            auto fit = [&](std::string text) {
                // Keep the end of long paths: the file name matters most.
                int baseline = 0;
                while (text.size() > 4 && cv::getTextSize(text, font, 0.33, 1, &baseline).width > kTile)
                    text = ".." + text.substr(3);
                return text;
            };
            cv::putText(sheet, fit(tiles[i].name), {x0, y0 + kTile + 12}, font, 0.33, cv::Scalar(0, 0, 0), 1,
                        cv::LINE_AA);
            cv::putText(sheet, fit(tiles[i].label), {x0, y0 + kTile + 25}, font, 0.33, cv::Scalar(90, 90, 90), 1,
                        cv::LINE_AA);
        }
    }
    return sheet;
}

std::string baseName(const std::string& name)
{
    if (name.rfind("idx:", 0) == 0)
        return name;
    return fs::path(name).filename().string();
}

}  // namespace

std::string Atlas::conceptLabel(int id) const
{
    if (id >= 0 && id < static_cast<int>(concepts.size()) && !concepts[static_cast<size_t>(id)].name.empty())
        return concepts[static_cast<size_t>(id)].name;
    return "concept " + std::to_string(id);
}

train::DatasetPtr openAtlasData(const std::string& path, const std::string& split, int64_t limit, uint64_t seed,
                                const std::vector<std::string>& classNames)
{
    using train::FashionMnist;
    std::error_code ec;
    if (!fs::is_directory(path, ec))
        throw std::invalid_argument(printablePath(path) + ": not a folder");
    if (split != "test" && split != "train")
        throw std::invalid_argument("split '" + split + "': use test or train");
    if (FashionMnist::detect(path)) {
        auto base = std::make_shared<const FashionMnist>(
            path, split == "train" ? FashionMnist::Split::Train : FashionMnist::Split::Test, limit);
        std::vector<int64_t> indices(static_cast<size_t>(base->size()));
        std::iota(indices.begin(), indices.end(), int64_t{0});
        return std::make_shared<IdxImages>(base, path, split, std::move(indices));
    }
    std::vector<std::string> files, classes;
    std::vector<int64_t> labels;
    std::string root = path;
    for (const auto& candidate : {split, std::string(split == "test" ? "val" : "")})
        if (!candidate.empty() && datasets::ImageFolder::looksLikeImageFolder((fs::path(path) / candidate).string())) {
            root = (fs::path(path) / candidate).string();
            break;
        }
    if (datasets::ImageFolder::looksLikeImageFolder(root)) {
        datasets::ImageFolder folder(root, classNames);
        files = folder.files();
        for (int64_t i = 0; i < folder.size(); ++i)
            labels.push_back(folder.label(i));
        classes = folder.classNames();
    } else {
        for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
            if (it->is_regular_file(ec) && isImageFile(it->path()))
                files.push_back(it->path().string());
        std::sort(files.begin(), files.end());
        labels.assign(files.size(), -1);
        classes = classNames;
    }
    if (files.empty())
        throw std::invalid_argument(printablePath(path) +
                                    ": no images (neither Fashion-MNIST IDX files, nor class folders of images, nor "
                                    "image files)");
    if (limit > 0 && limit < static_cast<int64_t>(files.size())) {
        std::vector<size_t> order(files.size());
        std::iota(order.begin(), order.end(), size_t{0});
        std::mt19937_64 rng(seed);
        for (size_t i = order.size() - 1; i > 0; --i)
            std::swap(order[i], order[static_cast<size_t>(rng() % (i + 1))]);
        order.resize(static_cast<size_t>(limit));
        std::sort(order.begin(), order.end());
        std::vector<std::string> keptFiles;
        std::vector<int64_t> keptLabels;
        for (auto i : order) {
            keptFiles.push_back(files[i]);
            keptLabels.push_back(labels[i]);
        }
        files = std::move(keptFiles);
        labels = std::move(keptLabels);
    }
    return std::make_shared<FileImages>(root, std::move(files), std::move(labels), std::move(classes));
}

train::DatasetPtr openAtlasImages(const Atlas& atlas)
{
    const bool idx = !atlas.images.empty() && atlas.images.front().rfind("idx:", 0) == 0;
    if (idx) {
        auto base = std::make_shared<const train::FashionMnist>(
            atlas.data, atlas.split == "train" ? train::FashionMnist::Split::Train : train::FashionMnist::Split::Test);
        std::vector<int64_t> indices;
        for (const auto& name : atlas.images) {
            const auto i = std::stoll(name.substr(4));
            if (i < 0 || i >= base->size())
                throw std::runtime_error("image " + name + " is outside " + base->description());
            indices.push_back(i);
        }
        return std::make_shared<IdxImages>(base, atlas.data, atlas.split, std::move(indices));
    }
    std::vector<int64_t> labels = atlas.labels;
    labels.resize(atlas.images.size(), -1);
    return std::make_shared<FileImages>(atlas.data, atlas.images, labels, atlas.classNames);
}

Atlas buildAtlas(FecModelImpl& model, const CheckpointInfo& info, const std::string& checkpointPath,
                 const c10::Device& device, const train::DatasetPtr& data, const ConceptOptions& options,
                 const AtlasProgress& progress, const std::atomic<bool>* cancel)
{
    const auto started = std::chrono::steady_clock::now();
    const auto& cfg = model.config();
    if (cfg.numClasses <= 0 || cfg.forkFeat)
        throw NoClassifierError();
    const int levels = levelCountOf(model);
    const int level = options.level == 0 ? levels : options.level;
    if (level < 1 || level > levels)
        throw std::invalid_argument("level " + std::to_string(options.level) +
                                    " does not exist: the model has levels 1 to " + std::to_string(levels));
    if (options.k < 2)
        throw std::invalid_argument("K = " + std::to_string(options.k) + ": an atlas needs at least 2 concepts");
    if (!data || data->size() == 0)
        throw std::invalid_argument("the dataset " + (data ? data->description() : std::string("(none)")) +
                                    " holds no images");
    if (options.batch < 1 || options.perConcept < 1 || options.attempts < 1)
        throw std::invalid_argument("batch, per-concept and attempts must be at least 1");

    Atlas atlas;
    atlas.modelFile = checkpointPath;
    atlas.modelSha1 = fileSha1(checkpointPath);
    atlas.level = level;
    atlas.levels = levels;
    atlas.k = options.k;
    atlas.seed = options.seed;
    atlas.perConcept = options.perConcept;
    atlas.inputSize = options.size > 0 ? options.size : inputSizeFor(info);
    cfg.checkInputSize(atlas.inputSize, atlas.inputSize);
    atlas.preprocess = !options.preprocess.empty() ? options.preprocess
                       : !info.preprocess.empty()  ? info.preprocess
                                                   : data->preprocess();
    const auto resize = imaging::parsePreprocess(atlas.preprocess);
    atlas.classNames = !info.classNames.empty() ? info.classNames : data->classNames();
    if (static_cast<int>(atlas.classNames.size()) != cfg.numClasses) {
        atlas.classNames.clear();
        for (int c = 0; c < cfg.numClasses; ++c)
            atlas.classNames.push_back("class " + std::to_string(c));
    }
    const auto* named = dynamic_cast<const NamedDataset*>(data.get());
    atlas.data = named ? named->path() : data->description();
    atlas.split = named ? named->split() : std::string();

    const int64_t n = data->size();
    const int64_t classes = cfg.numClasses;
    const int size = atlas.inputSize;
    auto safe = std::make_shared<SkippingDataset>(data);
    train::SampleTransform transform = [size, resize](const train::Sample& s, uint64_t) {
        if (!s.image.defined())
            return at::zeros({3, size, size}, at::kFloat);
        return imaging::prepareImage(sampleRgb(s.image), size, resize).tensor;
    };
    std::vector<std::vector<int64_t>> batches;
    for (int64_t i = 0; i < n; i += options.batch) {
        batches.emplace_back();
        for (int64_t j = i; j < std::min(n, i + options.batch); ++j)
            batches.back().push_back(j);
    }

    // What is kept per segment: its record, its normalised representative (float32 [D]) and its
    // evidence for every class; the traces are dropped batch by batch.
    std::vector<float> vectors, evidence;
    int64_t dims = 0;
    std::vector<int64_t> imageOf(static_cast<size_t>(n), -1);  // dataset index -> atlas image
    std::vector<int64_t> kept;                                 // atlas image -> dataset index
    std::vector<std::pair<int64_t, std::string>> skipped;
    {
        c10::InferenceMode guard;
        model.eval();
        train::Loader loader(safe, batches, transform, 0, std::max(0, options.workers));
        int64_t done = 0;
        if (progress)
            progress(0, n, "reading");
        while (auto batch = loader.next()) {
            checkCancel(cancel);
            TraceOptions to;
            to.blocks = false;
            auto trace = model.forwardTraced(batch->images.to(device), to);
            const auto ev = computeEvidence(model, trace.finalMap);
            const auto contributions = ev.contributions.contiguous();  // [B, classes, N]
            const auto predicted = trace.logits.argmax(1).to(at::kCPU);
            const auto reps = trace.pools[static_cast<size_t>(level - 1)].representatives.to(at::kFloat).contiguous();
            dims = reps.size(2);
            const int64_t positions = reps.size(1), finalN = contributions.size(2);
            const auto* labelsPtr = batch->labels.data_ptr<int64_t>();
            for (size_t b = 0; b < batch->indices.size(); ++b) {
                const int64_t index = batch->indices[b];
                if (labelsPtr[b] == kUnreadable) {
                    skipped.emplace_back(index, safe->error(index));
                    continue;
                }
                const auto pyramid = buildPyramid(trace, static_cast<int>(b));
                const int64_t image = static_cast<int64_t>(kept.size());
                kept.push_back(index);
                imageOf[static_cast<size_t>(index)] = image;
                atlas.labels.push_back(labelsPtr[b]);
                atlas.predicted.push_back(predicted[static_cast<int64_t>(b)].item<int64_t>());
                const float* contrib = contributions.data_ptr<float>() + static_cast<int64_t>(b) * classes * finalN;
                const float* rep = reps.data_ptr<float>() + static_cast<int64_t>(b) * positions * dims;
                const auto& lv = pyramid.levels[static_cast<size_t>(level - 1)];
                // Lower levels: each block carries its final segment's evidence spread evenly
                // over that segment's blocks (the evidence density), summed per segment.
                std::vector<double> located;
                if (level < levels) {
                    const auto& last = pyramid.levels.back();
                    std::vector<int64_t> finalBlocks(static_cast<size_t>(finalN), 0);
                    for (auto j : last.blockLabel)
                        ++finalBlocks[static_cast<size_t>(j)];
                    located.assign(lv.nonEmpty.size() * static_cast<size_t>(classes), 0.0);
                    for (size_t blk = 0; blk < lv.blockLabel.size(); ++blk) {
                        const auto c = static_cast<size_t>(lv.compact[static_cast<size_t>(lv.blockLabel[blk])]);
                        const auto j = static_cast<int64_t>(last.blockLabel[blk]);
                        for (int64_t cls = 0; cls < classes; ++cls)
                            located[c * static_cast<size_t>(classes) + static_cast<size_t>(cls)] +=
                                contrib[cls * finalN + j] / static_cast<double>(finalBlocks[static_cast<size_t>(j)]);
                    }
                }
                for (size_t i = 0; i < lv.nonEmpty.size(); ++i) {
                    const int32_t s = lv.nonEmpty[i];
                    AtlasSegment seg;
                    seg.image = image;
                    seg.level = level;
                    seg.segment = s;
                    const int node = pyramid.nodeOf(level, s);
                    if (node >= 0) {
                        const auto& nd = pyramid.nodes[static_cast<size_t>(node)];
                        seg.pixels = nd.pixels;
                        seg.x0 = nd.x0;
                        seg.y0 = nd.y0;
                        seg.x1 = nd.x1;
                        seg.y1 = nd.y1;
                    }
                    atlas.segments.push_back(seg);
                    const size_t at = vectors.size();
                    vectors.insert(vectors.end(), rep + s * dims, rep + (s + 1) * dims);
                    normaliseRows(vectors.data() + at, 1, dims);
                    for (int64_t cls = 0; cls < classes; ++cls)
                        evidence.push_back(
                            level == levels
                                ? contrib[cls * finalN + s]
                                : static_cast<float>(
                                      located[i * static_cast<size_t>(classes) + static_cast<size_t>(cls)]));
                }
            }
            done += static_cast<int64_t>(batch->indices.size());
            if (progress)
                progress(done, n, "reading");
        }
    }
    checkCancel(cancel);
    for (const auto& [index, why] : skipped)
        atlas.skipped.push_back(why);
    for (auto index : kept)
        atlas.images.push_back(named ? named->imageName(index) : "#" + std::to_string(index));
    const auto segments = static_cast<int64_t>(atlas.segments.size());
    if (atlas.images.empty())
        throw std::invalid_argument("none of the " + std::to_string(n) + " images of " + data->description() +
                                    " could be read (first: " + (atlas.skipped.empty() ? "" : atlas.skipped.front()) +
                                    ")");
    if (options.k > segments)
        throw std::invalid_argument("K = " + std::to_string(options.k) + " is larger than the " +
                                    std::to_string(segments) + " non-empty level-" + std::to_string(level) +
                                    " segments of " + std::to_string(atlas.images.size()) +
                                    " images: use a smaller --k or more images");

    // K-means on the normalised vectors (a seeded sample above fitLimit), then every segment goes
    // to the nearest normalised centre, so that assignments and centres always agree.
    if (progress)
        progress(n, n, "clustering");
    std::vector<int64_t> fitRows(static_cast<size_t>(segments));
    std::iota(fitRows.begin(), fitRows.end(), int64_t{0});
    if (options.fitLimit > 0 && segments > options.fitLimit) {
        std::mt19937_64 rng(train::mixSeed(options.seed, 0x6174));
        for (size_t i = fitRows.size() - 1; i > 0; --i)
            std::swap(fitRows[i], fitRows[static_cast<size_t>(rng() % (i + 1))]);
        fitRows.resize(static_cast<size_t>(options.fitLimit));
        std::sort(fitRows.begin(), fitRows.end());
    }
    atlas.fitted = static_cast<int64_t>(fitRows.size());
    // Without a sample, k-means reads the kept vectors in place (no second copy in memory).
    cv::Mat fit;
    if (atlas.fitted == segments) {
        fit = cv::Mat(static_cast<int>(segments), static_cast<int>(dims), CV_32F, vectors.data());
    } else {
        fit.create(static_cast<int>(fitRows.size()), static_cast<int>(dims), CV_32F);
        for (size_t r = 0; r < fitRows.size(); ++r)
            std::memcpy(fit.ptr<float>(static_cast<int>(r)), vectors.data() + fitRows[r] * dims,
                        static_cast<size_t>(dims) * sizeof(float));
    }
    cv::Mat best;
    double bestCompactness = std::numeric_limits<double>::infinity();
    for (int attempt = 0; attempt < options.attempts; ++attempt) {
        checkCancel(cancel);
        cv::Mat labels, centres;
        const auto saved = cv::theRNG().state;
        cv::theRNG().state = cv::RNG(train::mixSeed(options.seed, static_cast<uint64_t>(attempt))).state;
        const double compactness = cv::kmeans(
            fit, options.k, labels, cv::TermCriteria(cv::TermCriteria::EPS + cv::TermCriteria::MAX_ITER, 100, 1e-4), 1,
            cv::KMEANS_PP_CENTERS, centres);
        cv::theRNG().state = saved;
        if (compactness < bestCompactness) {
            bestCompactness = compactness;
            best = centres;
        }
    }
    fit.release();
    atlas.centres = at::from_blob(best.ptr<float>(), {options.k, dims}, at::kFloat).clone();
    normaliseRows(atlas.centres.data_ptr<float>(), options.k, dims);
    const float* centres = atlas.centres.data_ptr<float>();
    for (int64_t i = 0; i < segments; ++i) {
        auto& seg = atlas.segments[static_cast<size_t>(i)];
        seg.concept = nearest(vectors.data() + i * dims, centres, options.k, dims, &seg.distance);
    }
    vectors.clear();
    vectors.shrink_to_fit();
    checkCancel(cancel);

    if (progress)
        progress(n, n, "summarising");
    atlas.evidence = at::from_blob(evidence.data(), {segments, classes}, at::kFloat).clone();
    std::vector<std::vector<int64_t>> members(static_cast<size_t>(options.k));
    for (int64_t i = 0; i < segments; ++i)
        members[static_cast<size_t>(atlas.segments[static_cast<size_t>(i)].concept)].push_back(i);
    const auto images = static_cast<int64_t>(atlas.images.size());
    for (int c = 0; c < options.k; ++c) {
        ConceptSummary s;
        s.id = c;
        const auto& m = members[static_cast<size_t>(c)];
        s.size = static_cast<int64_t>(m.size());
        s.classCounts.assign(static_cast<size_t>(classes), 0);
        s.meanEvidence.assign(static_cast<size_t>(classes), 0.0);
        std::set<int64_t> seen;
        for (auto i : m) {
            const auto& seg = atlas.segments[static_cast<size_t>(i)];
            seen.insert(seg.image);
            // Images without a label (a flat folder) count under the class the model predicts.
            auto cls = atlas.labels[static_cast<size_t>(seg.image)];
            if (cls < 0 || cls >= classes)
                cls = atlas.predicted[static_cast<size_t>(seg.image)];
            ++s.classCounts[static_cast<size_t>(cls)];
            for (int64_t k = 0; k < classes; ++k)
                s.meanEvidence[static_cast<size_t>(k)] += evidence[static_cast<size_t>(i * classes + k)];
        }
        if (s.size > 0) {
            for (auto& e : s.meanEvidence)
                e /= static_cast<double>(s.size);
            s.purity = static_cast<double>(*std::max_element(s.classCounts.begin(), s.classCounts.end())) /
                       static_cast<double>(s.size);
        }
        s.imageShare = static_cast<double>(seen.size()) / static_cast<double>(images);
        const auto keep = std::min<size_t>(m.size(), static_cast<size_t>(options.perConcept));
        s.typical = m;
        std::partial_sort(s.typical.begin(), s.typical.begin() + static_cast<std::ptrdiff_t>(keep), s.typical.end(),
                          [&](int64_t a, int64_t b) {
                              const float da = atlas.segments[static_cast<size_t>(a)].distance;
                              const float db = atlas.segments[static_cast<size_t>(b)].distance;
                              return da != db ? da < db : a < b;
                          });
        s.typical.resize(keep);
        auto support = [&](int64_t i) {
            const auto image = atlas.segments[static_cast<size_t>(i)].image;
            return evidence[static_cast<size_t>(i * classes + atlas.predicted[static_cast<size_t>(image)])];
        };
        s.contributing = m;
        std::partial_sort(s.contributing.begin(), s.contributing.begin() + static_cast<std::ptrdiff_t>(keep),
                          s.contributing.end(), [&](int64_t a, int64_t b) {
                              const float ea = support(a), eb = support(b);
                              return ea != eb ? ea > eb : a < b;
                          });
        s.contributing.resize(keep);
        atlas.concepts.push_back(std::move(s));
    }
    atlas.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return atlas;
}

void writeAtlas(const Atlas& atlas, const std::string& dir, FecModelImpl& model, const c10::Device& device,
                const train::DatasetPtr& given, const std::atomic<bool>* cancel)
{
    // The dataset the atlas was built from holds the skipped images too: then the atlas's own
    // image list is reopened.
    const auto data =
        given && given->size() == static_cast<int64_t>(atlas.images.size()) ? given : openAtlasImages(atlas);
    const fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
    std::error_code ec;
    if (fs::exists(target, ec)) {
        if (!fs::is_directory(target, ec))
            throw std::runtime_error(printablePath(dir) + ": exists and is not a folder");
        if (!fs::is_empty(target, ec) && !fs::exists(target / "concepts.json", ec))
            throw std::runtime_error(printablePath(dir) +
                                     ": the folder is not empty and holds no atlas; choose an empty or new folder");
    }
    const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::current_path();
    fs::create_directories(parent, ec);
    const fs::path temp = parent / ("." + target.filename().string() + ".partial-" + std::to_string(::getpid()) + "-" +
                                    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    if (!fs::create_directory(temp, ec))
        throw std::runtime_error(printablePath(temp) + ": cannot create the folder (" + ec.message() + ")");
    try {
        checkCancel(cancel);
        const auto segments = static_cast<int64_t>(atlas.segments.size());
        std::vector<int32_t> assignments, boxes;
        std::vector<float> distances;
        for (const auto& s : atlas.segments) {
            assignments.insert(assignments.end(), {static_cast<int32_t>(s.image), s.level, s.segment, s.concept});
            boxes.insert(boxes.end(), {static_cast<int32_t>(s.pixels), s.x0, s.y0, s.x1, s.y1});
            distances.push_back(s.distance);
        }
        npy::write((temp / "assignments.npy").string(), npyArray("<i4", {segments, 4}, assignments.data()));
        npy::write((temp / "boxes.npy").string(), npyArray("<i4", {segments, 5}, boxes.data()));
        npy::write((temp / "distances.npy").string(), npyArray("<f4", {segments}, distances.data()));
        const auto centres = atlas.centres.to(at::kFloat).contiguous();
        npy::write((temp / "centres.npy").string(),
                   npyArray("<f4", {centres.size(0), centres.size(1)}, centres.data_ptr<float>()));
        const auto evidence = atlas.evidence.to(at::kFloat).contiguous();
        npy::write((temp / "evidence.npy").string(),
                   npyArray("<f4", {evidence.size(0), evidence.size(1)}, evidence.data_ptr<float>()));
        std::string list;
        for (const auto& name : atlas.images)
            list += name + "\n";
        writeFileAtomic((temp / "images.txt").string(), list);
        writeFileAtomic((temp / "concepts.json").string(), toJson(atlas).dump(2) + "\n");

        // Contact sheets: rerun the model on the images of the kept segments to outline them.
        std::map<int64_t, std::vector<int64_t>> wanted;  // image -> kept segment indices
        for (const auto& c : atlas.concepts) {
            for (auto i : c.typical)
                wanted[atlas.segments[static_cast<size_t>(i)].image].push_back(i);
            for (auto i : c.contributing)
                wanted[atlas.segments[static_cast<size_t>(i)].image].push_back(i);
        }
        std::map<int64_t, Tile> tiles;
        const auto resize = imaging::parsePreprocess(atlas.preprocess);
        const int size = atlas.inputSize;
        std::vector<int64_t> order;
        for (const auto& [image, list] : wanted)
            order.push_back(image);
        c10::InferenceMode guard;
        model.eval();
        const size_t batchSize = 32;
        for (size_t start = 0; start < order.size(); start += batchSize) {
            checkCancel(cancel);
            const size_t end = std::min(order.size(), start + batchSize);
            std::vector<imaging::PreparedImage> prepared;
            std::vector<at::Tensor> inputs;
            std::vector<bool> readable;
            for (size_t i = start; i < end; ++i) {
                try {
                    prepared.push_back(imaging::prepareImage(sampleRgb(data->get(order[i]).image), size, resize));
                    readable.push_back(true);
                } catch (const std::exception&) {
                    // The file went away since the build: its tiles stay grey.
                    prepared.push_back(
                        {cv::Mat(size, size, CV_8UC3, cv::Scalar(128, 128, 128)), at::zeros({3, size, size}), {}});
                    readable.push_back(false);
                }
                inputs.push_back(prepared.back().tensor);
            }
            TraceOptions to;
            to.blocks = false;
            const auto trace = model.forwardTraced(at::stack(inputs).to(device), to);
            for (size_t i = start; i < end; ++i) {
                const auto b = static_cast<int>(i - start);
                const auto pyramid = buildPyramid(trace, b);
                imaging::InputMapping identity;
                identity.inputSize = size;
                identity.imageWidth = size;
                identity.imageHeight = size;
                const auto& image = prepared[static_cast<size_t>(b)].rgb;
                for (auto segIndex : wanted[order[i]]) {
                    if (tiles.count(segIndex))
                        continue;
                    const auto& seg = atlas.segments[static_cast<size_t>(segIndex)];
                    const auto& lv = pyramid.levels[static_cast<size_t>(seg.level - 1)];
                    std::vector<uint8_t> mask(lv.blockLabel.size(), 0);
                    for (size_t blk = 0; blk < mask.size(); ++blk)
                        mask[blk] = lv.blockLabel[blk] == seg.segment ? 1 : 0;
                    cv::Mat drawn = readable[static_cast<size_t>(b)]
                                        ? imaging::highlight(image, mask, pyramid.blockH, pyramid.blockW, identity,
                                                             cv::Vec3b(255, 40, 40))
                                        : image.clone();
                    // Crop around the box with a margin of a third of its larger side, square.
                    const int bw = std::max(1, seg.x1 - seg.x0), bh = std::max(1, seg.y1 - seg.y0);
                    const int side = std::min(size, std::max(bw, bh) + 2 * std::max(4, std::max(bw, bh) / 3));
                    const int cx = (seg.x0 + seg.x1) / 2, cy = (seg.y0 + seg.y1) / 2;
                    const int x0 = std::clamp(cx - side / 2, 0, size - side),
                              y0 = std::clamp(cy - side / 2, 0, size - side);
                    Tile t;
                    cv::resize(drawn(cv::Rect(x0, y0, side, side)), t.picture, {kTile, kTile}, 0, 0,
                               side < kTile ? cv::INTER_NEAREST : cv::INTER_AREA);
                    t.name = baseName(atlas.images[static_cast<size_t>(seg.image)]);
                    const auto label = atlas.labels[static_cast<size_t>(seg.image)];
                    const auto pred = atlas.predicted[static_cast<size_t>(seg.image)];
                    auto className = [&](int64_t c) {
                        return c >= 0 && c < static_cast<int64_t>(atlas.classNames.size())
                                   ? atlas.classNames[static_cast<size_t>(c)]
                                   : std::string("?");
                    };
                    t.label = label >= 0 ? className(label) + (pred != label ? " (pred " + className(pred) + ")" : "")
                                         : "pred " + className(pred);
                    tiles.emplace(segIndex, std::move(t));
                }
            }
        }
        for (const auto& c : atlas.concepts) {
            checkCancel(cancel);
            std::vector<Tile> typical, contributing;
            for (auto i : c.typical)
                typical.push_back(tiles.at(i));
            for (auto i : c.contributing)
                contributing.push_back(tiles.at(i));
            const auto sheet = contactSheet(sheetTitle(atlas.conceptLabel(c.id), c.size, c.purity),
                                            {{"most typical (nearest the centre)", typical},
                                             {"most contributing (evidence for the predicted class)", contributing}});
            imaging::writeImageAtomic((temp / ("concept_" + std::to_string(c.id) + ".png")).string(), sheet);
        }
        checkCancel(cancel);
        // Swap the finished folder in; an older atlas there is replaced only now.
        if (fs::exists(target, ec)) {
            const fs::path old = parent / ("." + target.filename().string() + ".old-" + std::to_string(::getpid()));
            fs::rename(target, old);
            fs::rename(temp, target);
            fs::remove_all(old, ec);
        } else {
            fs::rename(temp, target);
        }
    } catch (...) {
        fs::remove_all(temp, ec);
        throw;
    }
}

Atlas readAtlas(const std::string& dir)
{
    const auto jsonPath = conceptsJsonPath(dir);
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw std::runtime_error(printablePath(dir) + ": not a folder");
    if (!fs::exists(jsonPath, ec))
        throw std::runtime_error(printablePath(jsonPath) + ": missing: this folder holds no concept atlas");
    json j = readConceptsJson(jsonPath);
    auto bad = [&](const std::string& file, const std::string& why) {
        return std::runtime_error(printablePath((fs::path(dir) / file).string()) + ": " + why);
    };
    Atlas a;
    try {
        if (j.value("format", std::string()) != kFormat)
            throw bad("concepts.json", "not a concept atlas (no \"format\": \"fec-concept-atlas\")");
        if (j.at("version").get<int>() > kVersion)
            throw bad("concepts.json",
                      "written by a newer version (" + std::to_string(j.at("version").get<int>()) + ")");
        a.modelFile = j.at("model").at("file").get<std::string>();
        a.modelSha1 = j.at("model").at("sha1").get<std::string>();
        a.data = j.at("data").at("path").get<std::string>();
        a.split = j.at("data").at("split").get<std::string>();
        a.skipped = j.at("data").at("skipped").get<std::vector<std::string>>();
        const auto& st = j.at("settings");
        a.level = st.at("level").get<int>();
        a.levels = st.at("levels").get<int>();
        a.k = st.at("k").get<int>();
        a.inputSize = st.at("input_size").get<int>();
        a.preprocess = st.at("preprocess").get<std::string>();
        a.seed = st.at("seed").get<uint64_t>();
        a.perConcept = st.at("per_concept").get<int>();
        a.fitted = j.at("fitted_on").get<int64_t>();
        a.classNames = j.at("class_names").get<std::vector<std::string>>();
        a.labels = j.at("labels").get<std::vector<int64_t>>();
        a.predicted = j.at("predicted").get<std::vector<int64_t>>();
        a.seconds = j.value("seconds", 0.0);
        for (const auto& o : j.at("concepts")) {
            ConceptSummary c;
            c.id = o.at("id").get<int>();
            c.name = o.at("name").get<std::string>();
            c.size = o.at("size").get<int64_t>();
            c.imageShare = o.at("image_share").get<double>();
            c.purity = o.at("purity").get<double>();
            c.classCounts = o.at("class_counts").get<std::vector<int64_t>>();
            c.meanEvidence = o.at("mean_evidence").get<std::vector<double>>();
            c.typical = o.at("typical").get<std::vector<int64_t>>();
            c.contributing = o.at("contributing").get<std::vector<int64_t>>();
            a.concepts.push_back(std::move(c));
        }
        const auto segments = j.at("segments").get<int64_t>();
        const auto images = j.at("data").at("images").get<int64_t>();
        const auto classes = static_cast<int64_t>(a.classNames.size());
        if (a.k < 2 || static_cast<int>(a.concepts.size()) != a.k)
            throw bad("concepts.json",
                      "lists " + std::to_string(a.concepts.size()) + " concepts but K = " + std::to_string(a.k));
        if (static_cast<int64_t>(a.labels.size()) != images || static_cast<int64_t>(a.predicted.size()) != images)
            throw bad("concepts.json", "labels/predicted do not list all " + std::to_string(images) + " images");
        for (size_t c = 0; c < a.concepts.size(); ++c) {
            const auto& s = a.concepts[c];
            if (s.id != static_cast<int>(c) || static_cast<int64_t>(s.classCounts.size()) != classes ||
                static_cast<int64_t>(s.meanEvidence.size()) != classes)
                throw bad("concepts.json", "concept " + std::to_string(c) + " is inconsistent (id or class lists)");
            for (auto i : s.typical)
                if (i < 0 || i >= segments)
                    throw bad("concepts.json", "concept " + std::to_string(c) + " names segment " + std::to_string(i) +
                                                   " of " + std::to_string(segments));
            for (auto i : s.contributing)
                if (i < 0 || i >= segments)
                    throw bad("concepts.json", "concept " + std::to_string(c) + " names segment " + std::to_string(i) +
                                                   " of " + std::to_string(segments));
        }

        auto load = [&](const std::string& file, const std::string& descr, std::vector<int64_t> shape) {
            npy::Array arr;
            try {
                arr = npy::read((fs::path(dir) / file).string());
            } catch (const std::exception& e) {
                throw std::runtime_error(e.what());
            }
            if (arr.descr != descr || arr.shape.size() != shape.size())
                throw bad(file, "expected " + descr + " with " + std::to_string(shape.size()) + " axes, found " +
                                    arr.descr + " with " + std::to_string(arr.shape.size()));
            for (size_t i = 0; i < shape.size(); ++i)
                if (shape[i] >= 0 && arr.shape[i] != shape[i])
                    throw bad(file, "axis " + std::to_string(i) + " has " + std::to_string(arr.shape[i]) +
                                        " entries, concepts.json says " + std::to_string(shape[i]));
            return arr;
        };
        const auto dims = j.at("dims").get<int64_t>();
        const auto assign = load("assignments.npy", "<i4", {segments, 4});
        const auto boxes = load("boxes.npy", "<i4", {segments, 5});
        const auto dist = load("distances.npy", "<f4", {segments});
        const auto centres = load("centres.npy", "<f4", {a.k, dims});
        const auto evidence = load("evidence.npy", "<f4", {segments, classes});
        const auto* as = reinterpret_cast<const int32_t*>(assign.bytes.data());
        const auto* bx = reinterpret_cast<const int32_t*>(boxes.bytes.data());
        const auto* ds = reinterpret_cast<const float*>(dist.bytes.data());
        a.segments.resize(static_cast<size_t>(segments));
        for (int64_t i = 0; i < segments; ++i) {
            auto& s = a.segments[static_cast<size_t>(i)];
            s.image = as[i * 4];
            s.level = as[i * 4 + 1];
            s.segment = as[i * 4 + 2];
            s.concept = as[i * 4 + 3];
            s.pixels = bx[i * 5];
            s.x0 = bx[i * 5 + 1];
            s.y0 = bx[i * 5 + 2];
            s.x1 = bx[i * 5 + 3];
            s.y1 = bx[i * 5 + 4];
            s.distance = ds[i];
            if (s.image < 0 || s.image >= images || s.concept < 0 || s.concept >= a.k || s.level != a.level)
                throw bad("assignments.npy", "row " + std::to_string(i) + " (image " + std::to_string(s.image) +
                                                 ", level " + std::to_string(s.level) + ", concept " +
                                                 std::to_string(s.concept) + ") does not fit concepts.json");
        }
        a.centres = at::from_blob(const_cast<uint8_t*>(centres.bytes.data()), {a.k, dims}, at::kFloat).clone();
        a.evidence =
            at::from_blob(const_cast<uint8_t*>(evidence.bytes.data()), {segments, classes}, at::kFloat).clone();
    } catch (const json::exception& e) {
        throw bad("concepts.json", std::string("missing or malformed field (") + e.what() + ")");
    }

    std::ifstream list(fs::path(dir) / "images.txt");
    if (!list)
        throw bad("images.txt", "missing");
    for (std::string line; std::getline(list, line);)
        a.images.push_back(line);
    if (static_cast<int64_t>(a.images.size()) != static_cast<int64_t>(a.labels.size()))
        throw bad("images.txt", "lists " + std::to_string(a.images.size()) + " images, concepts.json says " +
                                    std::to_string(a.labels.size()));
    return a;
}

void writeConceptNames(const std::string& dir, const std::vector<std::string>& names)
{
    const auto path = conceptsJsonPath(dir);
    json j = readConceptsJson(path);
    if (!j.contains("concepts") || !j["concepts"].is_array())
        throw std::runtime_error(printablePath(path) + ": no concept list");
    auto& concepts = j["concepts"];
    if (concepts.size() != names.size())
        throw std::invalid_argument(printablePath(path) + " has " + std::to_string(concepts.size()) + " concepts, " +
                                    std::to_string(names.size()) + " names were given");
    std::vector<size_t> renamed;
    for (size_t i = 0; i < names.size(); ++i) {
        if (concepts[i].value("name", std::string()) != names[i])
            renamed.push_back(i);
        concepts[i]["name"] = names[i];
    }
    writeFileAtomic(path, j.dump(2) + "\n");
    // The contact sheets carry the name in their title line: redraw that line of each renamed one.
    for (auto i : renamed) {
        const auto sheetPath = (fs::path(dir) / ("concept_" + std::to_string(i) + ".png")).string();
        cv::Mat sheet = cv::imread(sheetPath, cv::IMREAD_COLOR);
        if (sheet.empty() || sheet.rows <= kHeader)
            continue;  // a missing sheet is reported where sheets are shown
        cv::cvtColor(sheet, sheet, cv::COLOR_BGR2RGB);
        const auto& c = concepts[i];
        const std::string label = names[i].empty() ? "concept " + std::to_string(i) : names[i];
        drawSheetTitle(sheet, sheetTitle(label, c.value("size", int64_t{0}), c.value("purity", 0.0)));
        imaging::writeImageAtomic(sheetPath, sheet);
    }
}

AtlasAgreement compareAtlases(const Atlas& first, const Atlas& second)
{
    if (first.images != second.images)
        throw std::invalid_argument("the atlases were built from different images (" +
                                    std::to_string(first.images.size()) + " and " +
                                    std::to_string(second.images.size()) + "; compare atlases of one dataset)");
    if (first.level != second.level)
        throw std::invalid_argument("the atlases cluster different levels (" + std::to_string(first.level) + " and " +
                                    std::to_string(second.level) + ")");
    const auto n = first.segments.size();
    if (second.segments.size() != n)
        throw std::invalid_argument("the atlases hold different segments (" + std::to_string(n) + " and " +
                                    std::to_string(second.segments.size()) + "; built with another model?)");
    const auto ka = static_cast<size_t>(first.k), kb = static_cast<size_t>(second.k);
    std::vector<int64_t> table(ka * kb, 0), rows(ka, 0), cols(kb, 0);
    for (size_t i = 0; i < n; ++i) {
        const auto &a = first.segments[i], &b = second.segments[i];
        if (a.image != b.image || a.segment != b.segment)
            throw std::invalid_argument("the atlases hold different segments (row " + std::to_string(i) +
                                        " is segment " + std::to_string(a.segment) + " of image " +
                                        std::to_string(a.image) + " in one, segment " + std::to_string(b.segment) +
                                        " of image " + std::to_string(b.image) + " in the other)");
        if (a.concept < 0 || static_cast<size_t>(a.concept) >= ka || b.concept < 0 ||
            static_cast<size_t>(b.concept) >= kb)
            throw std::invalid_argument("segment row " + std::to_string(i) + " has no concept");
        ++table[static_cast<size_t>(a.concept) * kb + static_cast<size_t>(b.concept)];
        ++rows[static_cast<size_t>(a.concept)];
        ++cols[static_cast<size_t>(b.concept)];
    }
    AtlasAgreement r;
    r.segments = static_cast<int64_t>(n);
    // ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E), with
    // E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2). In doubles: exact below 2^53 pairs.
    auto pairs = [](int64_t v) { return 0.5 * static_cast<double>(v) * static_cast<double>(v - 1); };
    double index = 0, sumRows = 0, sumCols = 0;
    for (auto v : table)
        index += pairs(v);
    for (auto v : rows)
        sumRows += pairs(v);
    for (auto v : cols)
        sumCols += pairs(v);
    const double total = pairs(static_cast<int64_t>(n));
    const double expected = total > 0 ? sumRows * sumCols / total : 0;
    const double maximum = 0.5 * (sumRows + sumCols);
    // Both partitions trivial (one concept each, or every segment alone): identical, so 1.
    r.adjustedRand = maximum - expected != 0 ? (index - expected) / (maximum - expected) : 1.0;
    for (size_t c = 0; c < ka; ++c) {
        ConceptMatch m;
        m.concept = static_cast<int>(c);
        m.size = rows[c];
        for (size_t d = 0; d < kb; ++d)
            if (table[c * kb + d] > m.shared) {
                m.shared = table[c * kb + d];
                m.match = static_cast<int>(d);
            }
        if (m.match >= 0)
            m.jaccard = static_cast<double>(m.shared) /
                        static_cast<double>(rows[c] + cols[static_cast<size_t>(m.match)] - m.shared);
        r.matches.push_back(m);
    }
    return r;
}

void checkAtlasModel(const Atlas& atlas, const std::string& checkpointPath)
{
    const auto sha = fileSha1(checkpointPath);
    if (sha != atlas.modelSha1)
        throw std::runtime_error("this atlas was built from another model: " + printablePath(atlas.modelFile) +
                                 " (SHA-1 " + atlas.modelSha1 + "), not " + printablePath(checkpointPath) + " (SHA-1 " +
                                 sha + ")");
}

std::vector<int32_t> nearestConcepts(const Atlas& atlas, const at::Tensor& representatives)
{
    if (!atlas.centres.defined())
        throw std::invalid_argument("the atlas has no centres");
    const auto k = atlas.centres.size(0), d = atlas.centres.size(1);
    if (representatives.dim() != 2 || representatives.size(1) != d)
        throw std::invalid_argument("representatives must be [M, " + std::to_string(d) + "]");
    auto reps = representatives.to(at::kCPU, at::kFloat).contiguous().clone();
    const auto m = reps.size(0);
    normaliseRows(reps.data_ptr<float>(), m, d);
    const auto centres = atlas.centres.to(at::kFloat).contiguous();
    std::vector<int32_t> out(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i)
        out[static_cast<size_t>(i)] = nearest(reps.data_ptr<float>() + i * d, centres.data_ptr<float>(), k, d, nullptr);
    return out;
}

std::vector<int32_t> segmentConcepts(const Atlas& atlas, const SegmentPyramid& pyramid)
{
    const int level = atlas.level;
    if (level < 1 || level > pyramid.levelCount() || !pyramid.representatives[level - 1].defined())
        throw std::invalid_argument("this model has no level " + std::to_string(level) +
                                    " with representatives (the atlas's level)");
    const auto& lv = pyramid.levels[static_cast<size_t>(level - 1)];
    const auto ids = at::tensor(std::vector<int64_t>(lv.nonEmpty.begin(), lv.nonEmpty.end()), at::kLong);
    const auto& reps = pyramid.representatives[level - 1];
    return nearestConcepts(atlas, reps.index_select(0, ids.to(reps.device())));
}

std::vector<SheetTile> contactSheetTiles(const ConceptSummary& summary)
{
    const auto layout = sheetLayout({summary.typical.size(), summary.contributing.size()});
    std::vector<SheetTile> tiles;
    for (size_t s = 0; s < 2; ++s) {
        const auto& segments = s == 0 ? summary.typical : summary.contributing;
        for (size_t i = 0; i < segments.size(); ++i) {
            const auto& r = layout.tiles[s][i];
            tiles.push_back({segments[i], r.x, r.y, r.width, r.height});
        }
    }
    return tiles;
}

}  // namespace fec::explain
