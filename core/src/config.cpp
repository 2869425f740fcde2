#include "fec/config.h"

#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace fec {

namespace {

std::string joinInts(const StageInts& v)
{
    std::ostringstream out;
    for (size_t i = 0; i < v.size(); ++i)
        out << (i ? "," : "") << v[i];
    return out.str();
}

// A JSON integer as an int: get<int>() would wrap 4294967298 to 2 without a word.
int intValue(const nlohmann::json& v, const std::string& field)
{
    if (!v.is_number_integer())
        throw std::invalid_argument("fec_config: field '" + field + "' must be an integer (found " + v.dump() + ")");
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(std::numeric_limits<int>::max())
                                             : v.get<int64_t>() >= std::numeric_limits<int>::min() &&
                                                   v.get<int64_t>() <= std::numeric_limits<int>::max();
    if (!fits)
        throw std::invalid_argument("fec_config: field '" + field + "' is " + v.dump() + ", out of range");
    return static_cast<int>(v.get<int64_t>());
}

StageInts stageInts(const nlohmann::json& j, const char* key)
{
    if (!j.contains(key))
        throw std::invalid_argument(std::string("fec_config: missing field '") + key + "'");
    const auto& v = j.at(key);
    if (!v.is_array() || v.size() != 4)
        throw std::invalid_argument(std::string("fec_config: field '") + key + "' must be 4 integers");
    StageInts out{};
    for (size_t i = 0; i < 4; ++i)
        out[i] = intValue(v[i], std::string(key) + "[" + std::to_string(i) + "]");
    return out;
}

std::string numberText(double v)
{
    std::ostringstream out;
    out << v;
    return out.str();
}

StageInts fromVector(const std::vector<int>& v, const char* what)
{
    if (v.size() != 4)
        throw std::invalid_argument(std::string(what) + " needs 4 values (one per stage)");
    return {v[0], v[1], v[2], v[3]};
}

}  // namespace

FecConfig FecConfig::small()
{
    FecConfig c;
    c.variant = "fec_small";
    return c;
}

FecConfig FecConfig::base()
{
    FecConfig c;
    c.variant = "fec_base";
    c.layers = {2, 2, 6, 2};
    c.dims = {64, 128, 320, 512};
    c.headDims = {32, 32, 32, 32};
    return c;
}

FecConfig FecConfig::large()
{
    FecConfig c = base();
    c.variant = "fec_large";
    c.layers = {4, 4, 12, 4};
    c.heads = {6, 6, 12, 12};
    return c;
}

std::vector<std::string> FecConfig::variantNames()
{
    return {"fec_small", "fec_base", "fec_large"};
}

FecConfig FecConfig::named(const std::string& name)
{
    if (name == "fec_small")
        return small();
    if (name == "fec_base")
        return base();
    if (name == "fec_large")
        return large();
    throw std::invalid_argument("unknown architecture '" + name + "' (known: fec_small, fec_base, fec_large)");
}

int FecConfig::mlpHidden(int stage) const
{
    return static_cast<int>(dims[stage] * mlpRatios[stage]);
}

void FecConfig::validate() const
{
    auto fail = [](const std::string& why) { throw std::invalid_argument("invalid architecture: " + why); };
    auto inRange = [&](const StageInts& v, const char* field, int low, int high) {
        for (int s = 0; s < 4; ++s)
            if (v[s] < low || v[s] > high)
                fail(std::string(field) + " at stage " + std::to_string(s) + " is " + std::to_string(v[s]) +
                     ", outside " + std::to_string(low) + " to " + std::to_string(high) + " (" + field + " " +
                     joinInts(v) + ")");
    };
    inRange(layers, "layers", 0, kMaxStageLayers);
    inRange(dims, "dims", 1, kMaxWidth);
    inRange(heads, "heads", 1, kMaxWidth);
    inRange(headDims, "head_dims", 1, kMaxWidth);
    inRange(proposalW, "proposal_w", 1, kMaxProposals);
    inRange(proposalH, "proposal_h", 1, kMaxProposals);
    inRange(foldW, "fold_w", 1, kMaxFolds);
    inRange(foldH, "fold_h", 1, kMaxFolds);
    for (int s = 0; s < 4; ++s) {
        // 64-bit: 65536 x 65536 wraps to 0 in an int, and a zero-width layer divides by zero.
        const int64_t inner = int64_t(heads[s]) * headDims[s];
        if (inner > kMaxWidth)
            fail("heads x head_dims at stage " + std::to_string(s) + " is " + std::to_string(heads[s]) + " x " +
                 std::to_string(headDims[s]) + " = " + std::to_string(inner) + ", more than " +
                 std::to_string(kMaxWidth));
        const double ratio = mlpRatios[s];
        if (!(ratio > 0.0 && ratio <= kMaxMlpRatio))
            fail("mlp_ratios at stage " + std::to_string(s) + " is " + numberText(ratio) + ", outside (0, " +
                 std::to_string(static_cast<int>(kMaxMlpRatio)) + "]");
        const int hidden = mlpHidden(s);
        if (hidden < 1 || hidden > kMaxMlpHidden)
            fail("the MLP width at stage " + std::to_string(s) + " (dims x mlp_ratios = " + std::to_string(dims[s]) +
                 " x " + numberText(ratio) + " = " + std::to_string(hidden) + ") is outside 1 to " +
                 std::to_string(kMaxMlpHidden));
    }
    if (numClasses < 0 || numClasses > kMaxClasses)
        fail("num_classes is " + std::to_string(numClasses) + ", outside 0 to " + std::to_string(kMaxClasses));
    if (inChans < 1 || inChans > kMaxInChans)
        fail("in_chans is " + std::to_string(inChans) + ", outside 1 to " + std::to_string(kMaxInChans));
    if (forkFeat && numClasses != 0)
        fail("a dense-prediction backbone has no classifier head (num_classes " + std::to_string(numClasses) + ")");
    const int64_t parameters = parameterCount();
    if (parameters > kMaxParameters)
        fail(std::to_string(parameters) + " parameters, more than " + std::to_string(kMaxParameters) + " (" +
             summary() + ")");
}

int64_t FecConfig::parameterCount() const
{
    int64_t total = 0;
    for (const auto& [key, shape] : stateDictShapes(*this)) {
        int64_t n = 1;
        for (auto d : shape)
            n *= d;
        total += n;
    }
    return total;
}

ShapeMap stateDictShapes(const FecConfig& c)
{
    ShapeMap out;
    auto affine = [&](const std::string& name, std::vector<int64_t> weight) {
        const int64_t outputs = weight[0];
        out[name + ".weight"] = std::move(weight);
        out[name + ".bias"] = {outputs};
    };
    auto norm = [&](const std::string& name, int64_t channels) {
        out[name + ".weight"] = {channels};
        out[name + ".bias"] = {channels};
    };
    affine("patch_embed.proj", {c.dims[0], int64_t(c.inChans) + 2, 4, 4});
    for (int s = 0; s < 4; ++s) {
        const int64_t d = c.dims[s], inner = int64_t(c.heads[s]) * c.headDims[s], hidden = c.mlpHidden(s);
        for (int j = 0; j < c.layers[s]; ++j) {
            const std::string block = "network." + std::to_string(2 * s) + "." + std::to_string(j) + ".";
            out[block + "layer_scale_1"] = {d};
            out[block + "layer_scale_2"] = {d};
            norm(block + "norm1", d);
            out[block + "token_mixer.sim_alpha"] = {1};
            out[block + "token_mixer.sim_beta"] = {1};
            affine(block + "token_mixer.f", {inner, d, 1, 1});
            affine(block + "token_mixer.proj", {d, inner, 1, 1});
            affine(block + "token_mixer.v", {inner, d, 1, 1});
            norm(block + "norm2", d);
            affine(block + "mlp.fc1", {hidden, d});
            affine(block + "mlp.fc2", {d, hidden});
        }
        if (s < 3) {
            const std::string pool = "network." + std::to_string(2 * s + 1) + ".";
            const int64_t next = c.dims[s + 1];
            norm(pool + "norm2", next);
            affine(pool + "conv_f", {next, d, 1, 1});
            affine(pool + "conv_v", {next, d, 1, 1});
            affine(pool + "conv_skip", {next, d, 3, 3});
        }
    }
    if (c.forkFeat) {
        for (int s = 0; s < 4; ++s)
            norm("norm" + std::to_string(2 * s), c.dims[s]);
    } else {
        norm("norm", c.dims[3]);
        if (c.numClasses > 0)
            affine("head", {c.numClasses, c.dims[3]});
    }
    return out;
}

void FecConfig::checkInputSize(int64_t height, int64_t width) const
{
    auto fail = [&](const std::string& why) {
        throw std::invalid_argument("input size " + std::to_string(height) + "x" + std::to_string(width) +
                                    " is not supported by this model: " + why + " (use sides that are multiples of " +
                                    std::to_string(sizeMultiple()) + ")");
    };
    if (height < 32 || width < 32)
        fail("sides must be at least 32 pixels");
    if (height % 4 || width % 4)
        fail("the 4x4 patch embedding needs sides divisible by 4");
    int64_t h = height / 4, w = width / 4;
    for (int s = 0; s < 4; ++s) {
        if (h % foldW[s] || w % foldH[s])
            fail("stage " + std::to_string(s) + " folds do not divide its " + std::to_string(h) + "x" +
                 std::to_string(w) + " map");
        if (s == 3)
            break;
        // The pool after stage s uses the fold of stage s + 1 and halves each region.
        if ((h / foldW[s + 1]) % 2 || (w / foldH[s + 1]) % 2)
            fail("the pool after stage " + std::to_string(s) + " needs an even " + std::to_string(h) + "x" +
                 std::to_string(w) + " map");
        h /= 2;
        w /= 2;
    }
}

int FecConfig::sizeMultiple() const
{
    for (int m = 32; m <= 32 * 64; m += 32) {
        int64_t h = m / 4;
        bool ok = true;
        for (int s = 0; s < 4 && ok; ++s) {
            ok = h % foldW[s] == 0 && h % foldH[s] == 0;
            if (s < 3)
                ok = ok && (h / foldW[s + 1]) % 2 == 0 && (h / foldH[s + 1]) % 2 == 0;
            h /= 2;
        }
        if (ok)
            return m;
    }
    return 32;
}

std::string FecConfig::toJson() const
{
    nlohmann::ordered_json j;
    j["variant"] = variant;
    j["layers"] = layers;
    j["dims"] = dims;
    j["mlp_ratios"] = mlpRatios;
    j["heads"] = heads;
    j["head_dims"] = headDims;
    j["proposal_w"] = proposalW;
    j["proposal_h"] = proposalH;
    j["fold_w"] = foldW;
    j["fold_h"] = foldH;
    j["num_classes"] = numClasses;
    j["fork_feat"] = forkFeat;
    j["in_chans"] = inChans;
    return j.dump();
}

FecConfig FecConfig::fromJson(const std::string& text)
{
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("fec_config is not valid JSON: ") + e.what());
    }
    if (!j.is_object())
        throw std::invalid_argument("fec_config is not a JSON object");
    FecConfig c;
    try {
        c.variant = j.value("variant", std::string("custom"));
        c.layers = stageInts(j, "layers");
        c.dims = stageInts(j, "dims");
        const auto& ratios = j.at("mlp_ratios");
        if (!ratios.is_array() || ratios.size() != 4)
            throw std::invalid_argument("fec_config: field 'mlp_ratios' must be 4 numbers");
        for (size_t i = 0; i < 4; ++i)
            c.mlpRatios[i] = ratios[i].get<double>();
        c.heads = stageInts(j, "heads");
        c.headDims = stageInts(j, "head_dims");
        c.proposalW = stageInts(j, "proposal_w");
        c.proposalH = stageInts(j, "proposal_h");
        c.foldW = stageInts(j, "fold_w");
        c.foldH = stageInts(j, "fold_h");
        c.numClasses = j.contains("num_classes") ? intValue(j.at("num_classes"), "num_classes") : 1000;
        c.forkFeat = j.value("fork_feat", false);
        c.inChans = j.contains("in_chans") ? intValue(j.at("in_chans"), "in_chans") : 3;
    } catch (const nlohmann::json::exception& e) {
        throw std::invalid_argument(std::string("fec_config: ") + e.what());
    }
    try {
        c.validate();
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("fec_config: ") + e.what());
    }
    return c;
}

std::string FecConfig::summary() const
{
    std::ostringstream out;
    out << "layers " << joinInts(layers) << ", dims " << joinInts(dims) << ", mlp ratios ";
    for (size_t i = 0; i < 4; ++i)
        out << (i ? "," : "") << mlpRatios[i];
    out << ", heads " << joinInts(heads) << ", head dims " << joinInts(headDims) << ", proposals "
        << joinInts(proposalW) << (proposalW == proposalH ? "" : " x " + joinInts(proposalH)) << ", folds "
        << joinInts(foldW) << (foldW == foldH ? "" : " x " + joinInts(foldH));
    if (forkFeat)
        out << ", dense-prediction backbone";
    else
        out << ", " << numClasses << " classes";
    return out.str();
}

bool FecConfig::operator==(const FecConfig& o) const
{
    return layers == o.layers && dims == o.dims && mlpRatios == o.mlpRatios && heads == o.heads &&
           headDims == o.headDims && proposalW == o.proposalW && proposalH == o.proposalH && foldW == o.foldW &&
           foldH == o.foldH && numClasses == o.numClasses && forkFeat == o.forkFeat && inChans == o.inChans;
}

InferredConfig inferConfig(const ShapeMap& shapes, const ConfigHints& hints)
{
    auto shapeOf = [&](const std::string& key) -> const std::vector<int64_t>* {
        auto it = shapes.find(key);
        return it == shapes.end() ? nullptr : &it->second;
    };
    auto require = [&](const std::string& key, size_t dims) -> const std::vector<int64_t>& {
        const auto* s = shapeOf(key);
        if (!s)
            throw std::invalid_argument("missing key '" + key + "'");
        if (s->size() != dims)
            throw std::invalid_argument("key '" + key + "' has " + std::to_string(s->size()) +
                                        " dimensions, expected " + std::to_string(dims));
        return *s;
    };
    // One dimension as an int: a tensor with a zero dimension can claim any size without data.
    auto sizeAt = [](const std::string& key, const std::vector<int64_t>& shape, size_t i) {
        if (shape[i] < 0 || shape[i] > std::numeric_limits<int>::max())
            throw std::invalid_argument("key '" + key + "' has a dimension of " + std::to_string(shape[i]));
        return static_cast<int>(shape[i]);
    };

    InferredConfig out;
    FecConfig& c = out.config;
    const auto& embed = require("patch_embed.proj.weight", 4);
    if (embed[1] < 3 || embed[2] != 4 || embed[3] != 4)
        throw std::invalid_argument("patch_embed.proj.weight has shape that is not a 4x4 embedding of image + 2 "
                                    "position channels");
    c.inChans = sizeAt("patch_embed.proj.weight", embed, 1) - 2;

    for (int s = 0; s < 4; ++s) {
        const std::string stage = "network." + std::to_string(2 * s) + ".";
        int count = 0;
        while (shapeOf(stage + std::to_string(count) + ".norm1.weight"))
            ++count;
        c.layers[s] = count;
        if (s == 0)
            c.dims[0] = sizeAt("patch_embed.proj.weight", embed, 0);
        else {
            const std::string key = "network." + std::to_string(2 * s - 1) + ".conv_v.weight";
            c.dims[s] = sizeAt(key, require(key, 4), 0);
        }
        if (count > 0) {
            const auto& fc1 = require(stage + "0.mlp.fc1.weight", 2);
            c.mlpRatios[s] = static_cast<double>(fc1[0]) / static_cast<double>(c.dims[s]);
            const auto& f = require(stage + "0.token_mixer.f.weight", 4);
            c.heads[s] = sizeAt(stage + "0.token_mixer.f.weight", f, 0);  // total width for now, split below
        } else {
            c.heads[s] = 0;
        }
    }

    c.forkFeat = shapeOf("norm0.weight") && !shapeOf("head.weight");
    if (const auto* head = shapeOf("head.weight")) {
        if (head->size() != 2)
            throw std::invalid_argument("head.weight must be 2-D");
        c.numClasses = sizeAt("head.weight", *head, 0);
    } else {
        c.numClasses = 0;
    }

    // heads x head_dim: only the product is visible in the weights.
    std::array<int, 4> inner{};
    for (int s = 0; s < 4; ++s)
        inner[s] = c.heads[s];
    FecConfig published;
    bool matched = false;
    std::vector<std::string> candidates;
    if (!hints.arch.empty())
        candidates.push_back(hints.arch);
    for (const auto& name : FecConfig::variantNames())
        candidates.push_back(name);
    for (const auto& name : candidates) {
        FecConfig v;
        try {
            v = FecConfig::named(name);
        } catch (const std::invalid_argument&) {
            continue;
        }
        bool same = v.layers == c.layers && v.dims == c.dims;
        for (int s = 0; s < 4 && same; ++s)
            same = v.heads[s] * v.headDims[s] == inner[s] || c.layers[s] == 0;
        if (same) {
            published = v;
            matched = true;
            break;
        }
    }
    if (matched) {
        c.variant = published.variant;
        c.heads = published.heads;
        c.headDims = published.headDims;
        out.notes += "architecture matches " + published.variant + "; ";
    } else {
        c.variant = "custom";
        // Prefer the authors' head widths (32, 24), then smaller ones, with at least two heads.
        const int preferred[] = {32, 24, 16, 8, 64, 4, 2, 1};
        for (int s = 0; s < 4; ++s) {
            int chosen = inner[s] > 0 ? inner[s] : 1;
            for (int d : preferred) {
                if (inner[s] > 0 && inner[s] % d == 0 && inner[s] / d >= 2) {
                    chosen = d;
                    break;
                }
            }
            c.headDims[s] = chosen;
            c.heads[s] = inner[s] > 0 ? inner[s] / chosen : 1;
        }
        out.headsGuessed = true;
        out.notes += "heads x head_dim guessed from widths (override with --heads); ";
    }
    if (!hints.heads.empty() || !hints.headDims.empty()) {
        if (!hints.heads.empty())
            c.heads = fromVector(hints.heads, "heads");
        if (!hints.headDims.empty())
            c.headDims = fromVector(hints.headDims, "head dims");
        for (int s = 0; s < 4; ++s) {
            if (hints.headDims.empty())
                c.headDims[s] = c.heads[s] > 0 ? inner[s] / c.heads[s] : 1;
            if (hints.heads.empty())
                c.heads[s] = c.headDims[s] > 0 ? inner[s] / c.headDims[s] : 1;
            if (c.layers[s] > 0 && int64_t(c.heads[s]) * c.headDims[s] != inner[s])
                throw std::invalid_argument("stage " + std::to_string(s) + ": heads x head_dim must equal " +
                                            std::to_string(inner[s]) + " for these weights");
        }
        out.headsGuessed = false;
    }

    // Proposals and folds are not stored in the weights.
    if (c.forkFeat) {
        c.proposalW = c.proposalH = {10, 10, 5, 5};
        out.notes += "dense-prediction backbone: proposals default to the segmentation setting 10,10,5,5 "
                     "(detection uses 7,7,7,7 with folds 2,2,1,1; override with --proposals/--folds); ";
    }
    if (!hints.proposals.empty()) {
        c.proposalW = c.proposalH = fromVector(hints.proposals, "proposals");
        out.proposalsDefaulted = false;
    }
    if (!hints.folds.empty()) {
        c.foldW = c.foldH = fromVector(hints.folds, "folds");
        out.proposalsDefaulted = false;
    }
    c.validate();
    while (!out.notes.empty() && (out.notes.back() == ' ' || out.notes.back() == ';'))
        out.notes.pop_back();
    return out;
}

}  // namespace fec
