#include "fec/explain/evidence_stats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "fec/atomic_file.h"
#include "fec/file_hash.h"
#include "fec/train/loader.h"

namespace fec::explain {

namespace {

using json = nlohmann::ordered_json;

constexpr const char* kFormat = "fec-evidence-stats";
constexpr size_t kSkippedExamples = 5;
constexpr uint64_t kMaxFileBytes = 64ull << 20;  // a few KB in practice; refuse anything absurd

// The samples of a dataset turned into model inputs, with failures caught: an unreadable or
// unpreparable image comes back with an undefined image and label -1 (the loader rethrows a
// worker's exception, which would end the whole pass).
class TolerantInputs : public train::Dataset {
public:
    TolerantInputs(const train::Dataset& base, int size, train::EvalResize resize)
        : m_base(base), m_size(size), m_resize(resize)
    {
    }
    int64_t size() const override { return m_base.size(); }
    train::Sample get(int64_t index) const override
    {
        train::Sample s;
        try {
            s = m_base.get(index);
            s.image = train::evalTransform(s.image, m_size, m_resize);
            s.label = 0;
        } catch (const std::exception& e) {
            s.image = at::Tensor();
            s.label = -1;
            remember(e.what());
        }
        return s;
    }
    int64_t label(int64_t index) const override { return m_base.label(index); }
    std::vector<std::string> classNames() const override { return m_base.classNames(); }
    std::string description() const override { return m_base.description(); }
    std::string preprocess() const override { return m_base.preprocess(); }

    std::vector<std::string> examples() const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_examples;
    }

private:
    void remember(const std::string& what) const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_examples.size() < kSkippedExamples)
            m_examples.push_back(what);
    }

    const train::Dataset& m_base;
    int m_size;
    train::EvalResize m_resize;
    mutable std::mutex m_mutex;
    mutable std::vector<std::string> m_examples;
};

// Non-empty positions of every level for image `index` of a traced batch: level 1 holds the
// centres some pixel block was assigned to, level l the centres of level l-1's non-empty ones
// (SegmentPyramid's Eq. 8, without building the pyramid). [L] masks of [N_l] bytes.
std::vector<std::vector<uint8_t>> nonEmptyMasks(const std::vector<at::Tensor>& assigns,
                                                const std::vector<int64_t>& outCounts, int64_t index)
{
    std::vector<std::vector<uint8_t>> masks;
    std::vector<uint8_t> previous;  // level l-1 mask over this pool's inputs (empty: all inputs)
    for (size_t l = 0; l < assigns.size(); ++l) {
        const auto row = assigns[l][index];
        const auto* a = row.data_ptr<int64_t>();
        const int64_t in = row.size(0);
        std::vector<uint8_t> used(static_cast<size_t>(outCounts[l]), 0);
        for (int64_t i = 0; i < in; ++i)
            if (previous.empty() || previous[static_cast<size_t>(i)])
                used[static_cast<size_t>(a[i])] = 1;
        masks.push_back(used);
        previous = std::move(used);
    }
    return masks;
}

std::string resizeName(train::EvalResize resize)
{
    return resize == train::EvalResize::Squash ? "squash" : "crop";
}

bool isSha1(const std::string& s)
{
    return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
               return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
           });
}

[[noreturn]] void malformed(const std::string& path, const std::string& why)
{
    throw std::runtime_error(path + ": not a valid evidence statistics file (" + why +
                             "); recompute it with `fec evidence-stats`");
}

}  // namespace

EvidenceStats computeEvidenceStats(FecModelImpl& model, const train::Dataset& data, int size, train::EvalResize resize,
                                   int batch, const std::function<void(int64_t, int64_t)>& progress,
                                   const std::atomic<bool>* cancel, int workers)
{
    const int64_t total = data.size();
    if (total <= 0)
        throw std::invalid_argument("evidence statistics: " + data.description() + " has no images");
    if (batch < 1)
        throw std::invalid_argument("evidence statistics: the batch must hold at least one image");
    model.config().checkInputSize(size, size);
    const auto device = model.parameters().front().device();
    const bool wasTraining = model.is_training();
    model.eval();
    struct Restore {
        FecModelImpl& model;
        bool training;
        ~Restore()
        {
            if (training)
                model.train();
        }
    } restore{model, wasTraining};

    auto inputs = std::make_shared<TolerantInputs>(data, size, resize);
    train::Loader loader(
        inputs, train::evalBatches(total, batch, 0, 1),
        [size](const train::Sample& s, uint64_t) {
            return s.image.defined() ? s.image : at::zeros({3, size, size}, at::kFloat);
        },
        0, std::max(0, workers));

    c10::InferenceMode guard;
    TraceOptions traceOptions;
    traceOptions.pools = true;
    traceOptions.blocks = false;
    traceOptions.features = true;  // the pool outputs "network.1", ".3", ".5"

    std::vector<at::Tensor> sums;  // per level [D] float64
    std::vector<int64_t> positions;
    int64_t done = 0, images = 0, skipped = 0;
    while (auto b = loader.next()) {
        if (cancel && cancel->load())
            throw std::runtime_error("cancelled");
        const int64_t count = b->images.size(0);
        const auto* labels = b->labels.data_ptr<int64_t>();
        std::vector<uint8_t> readable(static_cast<size_t>(count));
        int64_t readableCount = 0;
        for (int64_t i = 0; i < count; ++i) {
            readable[static_cast<size_t>(i)] = labels[i] >= 0;
            readableCount += labels[i] >= 0;
        }
        skipped += count - readableCount;
        done += count;
        if (readableCount > 0) {
            const auto trace = model.forwardTraced(b->images.to(device), traceOptions);
            const int levels = static_cast<int>(trace.pools.size());
            if (sums.empty()) {
                sums.resize(static_cast<size_t>(levels));
                positions.assign(static_cast<size_t>(levels), 0);
            }
            std::vector<at::Tensor> assigns;
            std::vector<int64_t> outCounts;
            for (const auto& pool : trace.pools) {
                assigns.push_back(pool.assign.to(at::kLong).contiguous());
                outCounts.push_back(pool.outH * pool.outW);
            }
            // mask[l]: [B, N_l] float64, 1 at the non-empty positions of readable images.
            std::vector<at::Tensor> masks;
            for (int l = 0; l < levels; ++l)
                masks.push_back(at::zeros({count, outCounts[static_cast<size_t>(l)]}, at::kDouble));
            for (int64_t i = 0; i < count; ++i) {
                if (!readable[static_cast<size_t>(i)])
                    continue;
                const auto per = nonEmptyMasks(assigns, outCounts, i);
                for (int l = 0; l < levels; ++l) {
                    auto* m = masks[static_cast<size_t>(l)][i].data_ptr<double>();
                    const auto& used = per[static_cast<size_t>(l)];
                    for (size_t p = 0; p < used.size(); ++p)
                        if (used[p]) {
                            m[p] = 1.0;
                            ++positions[static_cast<size_t>(l)];
                        }
                }
            }
            for (int l = 0; l < levels; ++l) {
                const auto name = "network." + std::to_string(trace.pools[static_cast<size_t>(l)].networkIndex);
                const auto it = trace.features.find(name);
                if (it == trace.features.end())
                    throw std::logic_error("evidence statistics: the traced forward did not record " + name);
                const auto& f = it->second;  // [B, D, h, w]
                const auto flat = f.to(at::kCPU, at::kDouble).reshape({count, f.size(1), -1});
                // sum over images and positions of feature * mask: [D]
                auto s = at::einsum("bdn,bn->d", {flat, masks[static_cast<size_t>(l)]});
                auto& acc = sums[static_cast<size_t>(l)];
                acc = acc.defined() ? acc + s : s;
            }
            images += readableCount;
        }
        if (progress)
            progress(done, total);
    }
    if (cancel && cancel->load())
        throw std::runtime_error("cancelled");
    if (images == 0)
        throw std::runtime_error(
            "evidence statistics: no image of " + data.description() + " could be read (" + std::to_string(skipped) +
            " skipped" + (inputs->examples().empty() ? std::string() : "; first: " + inputs->examples()[0]) + ")");

    EvidenceStats stats;
    stats.data = data.description();
    stats.inputSize = size;
    stats.preprocess = resizeName(resize);
    stats.images = images;
    stats.skipped = skipped;
    stats.skippedExamples = inputs->examples();
    stats.positions = positions;
    for (size_t l = 0; l < sums.size(); ++l)
        stats.levelMeans.push_back(
            sums[l].div(static_cast<double>(std::max<int64_t>(1, positions[l]))).to(at::kFloat).contiguous());
    return stats;
}

std::string evidenceStatsPathFor(const std::string& checkpointPath)
{
    return checkpointPath + ".evidence-stats.json";
}

void writeEvidenceStats(const EvidenceStats& stats, const std::string& path)
{
    if (!isSha1(stats.modelSha1))
        throw std::invalid_argument("evidence statistics for " + path +
                                    " need the model file's SHA-1 (40 hex digits), got '" + stats.modelSha1 + "'");
    if (stats.levelMeans.empty() || stats.positions.size() != stats.levelMeans.size())
        throw std::invalid_argument("evidence statistics for " + path + " have no levels");
    json j;
    j["format"] = kFormat;
    j["version"] = kEvidenceStatsVersion;
    j["model_sha1"] = stats.modelSha1;
    j["data"] = stats.data;
    j["input_size"] = stats.inputSize;
    j["preprocess"] = stats.preprocess;
    j["images"] = stats.images;
    j["skipped"] = stats.skipped;
    j["levels"] = json::array();
    for (size_t l = 0; l < stats.levelMeans.size(); ++l) {
        const auto mean = stats.levelMeans[l].to(at::kCPU, at::kFloat).contiguous().reshape({-1});
        const auto* p = mean.data_ptr<float>();
        json values = json::array();
        for (int64_t i = 0; i < mean.numel(); ++i) {
            if (!std::isfinite(p[i]))
                throw std::invalid_argument("evidence statistics for " + path + ": level " + std::to_string(l + 1) +
                                            " has a non-finite mean (the model's features are NaN/inf)");
            values.push_back(static_cast<double>(p[i]));  // a float's exact value: read back bit for bit
        }
        j["levels"].push_back({{"level", static_cast<int>(l) + 1},
                               {"dims", mean.numel()},
                               {"positions", stats.positions[l]},
                               {"mean", std::move(values)}});
    }
    // invalid UTF-8 in a dataset path must not make dump() throw
    writeFileAtomic(path, j.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
}

EvidenceStats readEvidenceStats(const std::string& path)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw std::runtime_error(path + ": no such evidence statistics file");
    const auto bytes = readFileBytes(path, kMaxFileBytes);
    json j;
    try {
        j = json::parse(bytes.begin(), bytes.end());
    } catch (const json::parse_error& e) {
        malformed(path, std::string("truncated or malformed JSON: ") + e.what());
    }
    if (!j.is_object())
        malformed(path, "not a JSON object");
    if (!j.contains("format") || j["format"] != kFormat)
        malformed(path, std::string("no \"format\": \"") + kFormat + "\"");
    EvidenceStats s;
    try {
        const int version = j.at("version").get<int>();
        if (version < 1)
            malformed(path, "version " + std::to_string(version));
        if (version > kEvidenceStatsVersion)
            throw std::runtime_error(path + ": evidence statistics format version " + std::to_string(version) +
                                     " is newer than this fec reads (" + std::to_string(kEvidenceStatsVersion) +
                                     "); update fec or recompute them with `fec evidence-stats`");
        s.modelSha1 = j.at("model_sha1").get<std::string>();
        if (!isSha1(s.modelSha1))
            malformed(path, "model_sha1 is not 40 lowercase hex digits");
        s.data = j.value("data", std::string());
        s.inputSize = j.at("input_size").get<int>();
        if (s.inputSize <= 0)
            malformed(path, "input_size " + std::to_string(s.inputSize));
        s.preprocess = j.value("preprocess", std::string());
        s.images = j.at("images").get<int64_t>();
        s.skipped = j.value("skipped", int64_t{0});
        const auto& levels = j.at("levels");
        if (!levels.is_array() || levels.empty())
            malformed(path, "no levels");
        for (size_t l = 0; l < levels.size(); ++l) {
            const auto& level = levels[l];
            const auto where = "level " + std::to_string(l + 1);
            if (level.at("level").get<int>() != static_cast<int>(l) + 1)
                malformed(path, where + " is numbered " + level.at("level").dump());
            const auto dims = level.at("dims").get<int64_t>();
            const auto& mean = level.at("mean");
            if (!mean.is_array() || dims <= 0 || static_cast<int64_t>(mean.size()) != dims)
                malformed(path, where + ": " + std::to_string(mean.is_array() ? mean.size() : 0) + " mean values for " +
                                    std::to_string(dims) + " dims");
            auto t = at::empty({dims}, at::kFloat);
            auto* p = t.data_ptr<float>();
            for (int64_t i = 0; i < dims; ++i) {
                const auto& v = mean[static_cast<size_t>(i)];
                if (!v.is_number())
                    malformed(path, where + ": mean value " + std::to_string(i) + " is not a number");
                p[i] = static_cast<float>(v.get<double>());
                if (!std::isfinite(p[i]))
                    malformed(path, where + ": mean value " + std::to_string(i) + " is not finite");
            }
            s.positions.push_back(level.at("positions").get<int64_t>());
            s.levelMeans.push_back(t);
        }
    } catch (const json::exception& e) {
        malformed(path, std::string("missing or wrong field: ") + e.what());
    }
    return s;
}

void checkEvidenceStats(const EvidenceStats& stats, const std::string& statsPath, const std::string& checkpointPath,
                        FecModelImpl& model)
{
    const auto sha = fileSha1(checkpointPath);
    if (stats.modelSha1 != sha)
        throw std::runtime_error(statsPath + " belongs to another model file (SHA-1 " + stats.modelSha1 + "), not to " +
                                 checkpointPath + " (SHA-1 " + sha +
                                 "); recompute them with `fec evidence-stats --checkpoint " + checkpointPath +
                                 " --data ...`");
    const auto& dims = model.config().dims;
    const size_t levels = dims.size() - 1;  // one pool between consecutive stages
    if (stats.levelMeans.size() != levels)
        throw std::runtime_error(statsPath + " has " + std::to_string(stats.levelMeans.size()) +
                                 " levels; the model has " + std::to_string(levels));
    for (size_t l = 0; l < levels; ++l) {
        const int64_t want = dims[l + 1];
        if (stats.levelMeans[l].numel() != want)
            throw std::runtime_error(
                statsPath + ": level " + std::to_string(l + 1) + " has " + std::to_string(stats.levelMeans[l].numel()) +
                " values per position; the model's level " + std::to_string(l + 1) + " has " + std::to_string(want));
    }
}

EvidenceStats loadEvidenceStats(const std::string& statsPath, const std::string& checkpointPath, FecModelImpl& model)
{
    auto stats = readEvidenceStats(statsPath);
    checkEvidenceStats(stats, statsPath, checkpointPath, model);
    return stats;
}

std::optional<EvidenceStats> loadEvidenceStatsFor(const std::string& checkpointPath, FecModelImpl& model)
{
    const auto path = evidenceStatsPathFor(checkpointPath);
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return std::nullopt;
    return loadEvidenceStats(path, checkpointPath, model);
}

at::Tensor datasetMeanFor(const EvidenceStats& stats, int level)
{
    const int levels = static_cast<int>(stats.levelMeans.size());
    if (level < 1 || level > levels)
        throw std::out_of_range("evidence statistics: level " + std::to_string(level) +
                                " does not exist (levels 1 to " + std::to_string(levels) + ")");
    return stats.levelMeans[static_cast<size_t>(level - 1)];
}

}  // namespace fec::explain
