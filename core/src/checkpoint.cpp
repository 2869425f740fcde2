#include "fec/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <set>
#include <sstream>
#include <unordered_set>

#include <ATen/ATen.h>
#include <c10/util/Half.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include "fec/atomic_file.h"

namespace fec {

namespace {

using pickle::Value;
using pickle::ValuePtr;

std::string shapeText(at::IntArrayRef shape)
{
    std::ostringstream out;
    out << "[";
    for (size_t i = 0; i < shape.size(); ++i)
        out << (i ? ", " : "") << shape[i];
    out << "]";
    return out.str();
}

std::string listSome(const std::vector<std::string>& keys, size_t most = 5)
{
    std::string out;
    for (size_t i = 0; i < keys.size() && i < most; ++i)
        out += (i ? ", " : "") + keys[i];
    if (keys.size() > most)
        out += ", ... (" + std::to_string(keys.size()) + " in all)";
    return out;
}

bool isStateDictLike(const Value& v)
{
    if (v.kind != Value::Kind::Dict || v.dict.empty())
        return false;
    size_t tensors = 0;
    for (const auto& [k, val] : v.dict)
        if (k->kind == Value::Kind::String && val->kind == Value::Kind::Tensor)
            ++tensors;
    return tensors * 2 >= v.dict.size();
}

// JSON of a pickled value (`args`, scalar entries). A pickle may reference one object any number
// of times through its memo, so each container, and each string longer than kInlineRepeat bytes,
// is written once; later references become kSharedMarker. All that references repeat (markers,
// short strings, numbers, keys) may add kMaxRepeatedBytes of text, then std::length_error.
class JsonWriter {
public:
    nlohmann::ordered_json write(const Value& v, int depth = 0);

private:
    static constexpr std::size_t kInlineRepeat = 64;
    static constexpr std::size_t kMaxRepeatedBytes = 1 << 20;
    static constexpr const char* kSharedMarker = "<shared, shown earlier>";

    void chargeRepeat(std::size_t bytes)
    {
        m_repeatedBytes += bytes;
        if (m_repeatedBytes > kMaxRepeatedBytes)
            throw std::length_error("its shared references would repeat more than " +
                                    std::to_string(kMaxRepeatedBytes >> 20) + " MiB of text");
    }

    std::unordered_set<const Value*> m_seen;
    std::size_t m_repeatedBytes = 0;
};

nlohmann::ordered_json JsonWriter::write(const Value& v, int depth)
{
    if (depth > 32)
        return "...";
    if (!m_seen.insert(&v).second) {
        const bool container = v.kind == Value::Kind::List || v.kind == Value::Kind::Tuple ||
                               v.kind == Value::Kind::Dict || v.kind == Value::Kind::Object;
        if (container || (v.kind == Value::Kind::String && v.s.size() > kInlineRepeat)) {
            chargeRepeat(std::strlen(kSharedMarker) + 3);
            return kSharedMarker;
        }
        chargeRepeat(v.kind == Value::Kind::String ? v.s.size() + 3 : 24);
    }
    switch (v.kind) {
    case Value::Kind::None:
        return nullptr;
    case Value::Kind::Bool:
        return v.b;
    case Value::Kind::Int:
        return v.i;
    case Value::Kind::Float:
        return std::isfinite(v.f) ? nlohmann::ordered_json(v.f) : nlohmann::ordered_json(std::to_string(v.f));
    case Value::Kind::String:
        return v.s;
    case Value::Kind::List:
    case Value::Kind::Tuple: {
        auto arr = nlohmann::ordered_json::array();
        for (const auto& item : v.items)
            arr.push_back(write(*item, depth + 1));
        return arr;
    }
    case Value::Kind::Dict: {
        auto obj = nlohmann::ordered_json::object();
        for (const auto& [k, val] : v.dict) {
            std::string key = k->kind == Value::Kind::String ? k->s : k->describe();
            if (!m_seen.insert(k.get()).second)
                chargeRepeat(key.size() + 4);
            obj[key] = write(*val, depth + 1);
        }
        return obj;
    }
    case Value::Kind::Object:
        if (v.state && v.state->kind == Value::Kind::Dict)
            return write(*v.state, depth + 1);
        return v.describe();
    default:
        return v.describe();
    }
}

std::vector<std::string> stringList(const ValuePtr& v)
{
    std::vector<std::string> out;
    if (!v || (v->kind != Value::Kind::List && v->kind != Value::Kind::Tuple))
        return out;
    for (const auto& item : v->items)
        if (item->kind == Value::Kind::String)
            out.push_back(item->s);
    return out;
}

// Removes a prefix carried by every key (DDP's "module.", torch.compile's "_orig_mod.") or
// keeps only the backbone of a dense-prediction checkpoint.
StateDict stripPrefixes(StateDict dict, CheckpointInfo& info)
{
    // Prefixes are measured first and cut once: a hostile key may repeat one many times.
    size_t cut = 0;
    auto allStartWith = [&](const std::string& prefix) {
        return !dict.empty() && std::all_of(dict.begin(), dict.end(), [&](const auto& kv) {
            return kv.first.compare(cut, prefix.size(), prefix) == 0;
        });
    };
    for (bool changed = true; changed;) {
        changed = false;
        for (const std::string prefix : {"module.", "_orig_mod.", "model.", "backbone."}) {
            if (allStartWith(prefix)) {
                cut += prefix.size();
                if (info.strippedPrefix.size() < 256)
                    info.strippedPrefix += prefix;
                changed = true;
            }
        }
    }
    if (cut > 0)
        for (auto& kv : dict)
            kv.first.erase(0, cut);
    const bool hasBackbone =
        std::any_of(dict.begin(), dict.end(), [](const auto& kv) { return kv.first.rfind("backbone.", 0) == 0; });
    if (hasBackbone) {
        StateDict kept;
        for (auto& kv : dict) {
            if (kv.first.rfind("backbone.", 0) == 0)
                kept.emplace_back(kv.first.substr(9), kv.second);
            else
                ++info.skippedKeys;
        }
        info.strippedPrefix += "backbone.";
        dict = std::move(kept);
    }
    return dict;
}

// An allocation failure, from new (std::bad_alloc) or from LibTorch's CPU allocator (c10::Error).
bool isAllocationFailure(const std::exception& e)
{
    if (dynamic_cast<const std::bad_alloc*>(&e))
        return true;
    const auto* error = dynamic_cast<const c10::Error*>(&e);
    const std::string message = error ? error->what_without_backtrace() : e.what();
    return message.find("not enough memory") != std::string::npos || message.find("out of memory") != std::string::npos;
}

// What keeps a model of `config` from holding weights of these shapes, in loadWeights' words;
// empty when they agree. Shapes alone: no model is allocated for weights the file does not have.
std::string shapeProblems(const FecConfig& config, const ShapeMap& shapes)
{
    const auto expected = stateDictShapes(config);
    std::vector<std::string> mismatched, missing, unexpected;
    for (const auto& [key, shape] : shapes) {
        const auto it = expected.find(key);
        if (it == expected.end())
            unexpected.push_back(key);
        else if (it->second != shape)
            mismatched.push_back(key + " (expected " + shapeText(it->second) + ", found " + shapeText(shape) + ")");
    }
    for (const auto& [key, shape] : expected)
        if (!shapes.count(key))
            missing.push_back(key);
    if (!mismatched.empty())
        return "shape mismatch: " + listSome(mismatched, 3);
    if (!missing.empty())
        return "missing keys: " + listSome(missing);
    if (!unexpected.empty())
        return "unexpected keys: " + listSome(unexpected);
    return "";
}

}  // namespace

WeightsChoice parseWeightsChoice(const std::string& text)
{
    if (text == "auto")
        return WeightsChoice::Auto;
    if (text == "state_dict")
        return WeightsChoice::StateDict;
    if (text == "ema" || text == "state_dict_ema")
        return WeightsChoice::Ema;
    throw std::invalid_argument("--weights must be auto, state_dict or ema (got '" + text + "')");
}

std::string toString(CheckpointLayout layout)
{
    switch (layout) {
    case CheckpointLayout::Unknown:
        return "";
    case CheckpointLayout::TimmTraining:
        return "timm training checkpoint";
    case CheckpointLayout::ModelEntry:
        return "checkpoint with a 'model' entry";
    case CheckpointLayout::BareStateDict:
        return "bare state_dict";
    }
    return "";
}

std::string toString(WeightsEntry entry)
{
    switch (entry) {
    case WeightsEntry::Unknown:
        return "";
    case WeightsEntry::StateDictEma:
        return "state_dict_ema";
    case WeightsEntry::StateDict:
        return "state_dict";
    case WeightsEntry::Model:
        return "model";
    case WeightsEntry::TopLevel:
        return "(top level)";
    }
    return "";
}

std::string weightsDescription(const CheckpointInfo& info)
{
    return toString(info.weights) +
           (info.noSeparateStateDict ? " (the file has no separate state_dict/state_dict_ema)" : "");
}

at::Tensor toTensor(const pickle::TensorRef& ref, const pickle::Storage& storage)
{
    using pickle::DType;
    at::ScalarType type;
    switch (ref.dtype) {
    case DType::Float32:
        type = at::kFloat;
        break;
    case DType::Float64:
        type = at::kDouble;
        break;
    case DType::Float16:
        type = at::kHalf;
        break;
    case DType::BFloat16:
        type = at::kBFloat16;
        break;
    case DType::Int64:
        type = at::kLong;
        break;
    case DType::Int32:
        type = at::kInt;
        break;
    case DType::Int16:
        type = at::kShort;
        break;
    case DType::Int8:
        type = at::kChar;
        break;
    case DType::UInt8:
        type = at::kByte;
        break;
    case DType::Bool:
        type = at::kBool;
        break;
    default:
        throw std::invalid_argument("unsupported tensor type");
    }
    if (static_cast<int64_t>(storage.bytes.size()) < storage.numel * static_cast<int64_t>(pickle::dtypeSize(ref.dtype)))
        throw std::invalid_argument("storage " + ref.storageKey + " is shorter than its element count");
    // The reader validated offset/sizes/strides against the storage; view then copy out.
    auto whole =
        at::from_blob(const_cast<uint8_t*>(storage.bytes.data()), {storage.numel}, at::TensorOptions().dtype(type));
    return whole.as_strided(ref.sizes, ref.strides, ref.offset).clone(at::MemoryFormat::Contiguous);
}

pickle::ValuePtr tensorValue(const at::Tensor& tensor, std::map<std::string, pickle::Storage>& storages)
{
    using pickle::DType;
    auto t = tensor.detach().to(at::kCPU).contiguous();
    DType dtype;
    switch (t.scalar_type()) {
    case at::kFloat:
        dtype = DType::Float32;
        break;
    case at::kDouble:
        dtype = DType::Float64;
        break;
    case at::kHalf:
        dtype = DType::Float16;
        break;
    case at::kBFloat16:
        dtype = DType::BFloat16;
        break;
    case at::kLong:
        dtype = DType::Int64;
        break;
    case at::kInt:
        dtype = DType::Int32;
        break;
    case at::kByte:
        dtype = DType::UInt8;
        break;
    case at::kBool:
        dtype = DType::Bool;
        break;
    default:
        throw std::invalid_argument("cannot save tensors of type " + std::string(c10::toString(t.scalar_type())));
    }
    const std::string key = std::to_string(storages.size());
    pickle::Storage storage;
    storage.dtype = dtype;
    storage.numel = t.numel();
    storage.bytes.resize(static_cast<size_t>(t.numel()) * t.element_size());
    if (!storage.bytes.empty())
        std::memcpy(storage.bytes.data(), t.data_ptr(), storage.bytes.size());
    storages.emplace(key, std::move(storage));

    pickle::TensorRef ref;
    ref.storageKey = key;
    ref.dtype = dtype;
    ref.storageNumel = t.numel();
    ref.sizes = t.sizes().vec();
    ref.strides = t.strides().vec();
    return Value::tensorRef(ref);
}

std::string valueToJson(const pickle::Value& value)
{
    JsonWriter writer;
    return writer.write(value).dump();
}

StateDict readStateDict(const std::string& path, const LoadOptions& options, CheckpointInfo* infoOut)
{
    CheckpointInfo info;
    info.path = path;
    auto fail = [&](const std::string& why) -> CheckpointError { return CheckpointError(path + ": " + why); };

    pickle::Archive archive;
    try {
        archive = pickle::readTorchFile(path);
    } catch (const pickle::FormatError& e) {
        throw fail(e.what());
    } catch (const std::bad_alloc&) {
        throw fail("out of memory while reading the file");
    } catch (const std::exception& e) {
        // I/O errors already name the file.
        throw CheckpointError(e.what());
    }
    info.container = archive.format == pickle::ContainerFormat::Zip ? "zip" : "legacy";
    info.ignoredGlobals = archive.ignoredGlobals;
    const auto& root = archive.root;
    if (!root || root->kind != Value::Kind::Dict)
        throw fail("not an FEC checkpoint: the file holds " + (root ? root->describe() : std::string("nothing")) +
                   ", not a dictionary of weights");

    ValuePtr weights;
    const auto stateDict = root->get("state_dict");
    const auto ema = root->get("state_dict_ema");
    info.hasEma = ema && isStateDictLike(*ema);
    if (stateDict || ema) {
        info.layout = CheckpointLayout::TimmTraining;
        bool useEma = options.weights == WeightsChoice::Ema || (options.weights == WeightsChoice::Auto && info.hasEma);
        if (useEma && !info.hasEma)
            throw fail("--weights ema requested but the checkpoint has no state_dict_ema");
        if (!useEma && !(stateDict && isStateDictLike(*stateDict)))
            throw fail("the checkpoint has no usable state_dict");
        weights = useEma ? ema : stateDict;
        info.weights = useEma ? WeightsEntry::StateDictEma : WeightsEntry::StateDict;
    } else if (auto model = root->get("model"); model && isStateDictLike(*model)) {
        info.layout = CheckpointLayout::ModelEntry;
        info.weights = WeightsEntry::Model;
        weights = model;
    } else if (isStateDictLike(*root)) {
        info.layout = CheckpointLayout::BareStateDict;
        info.weights = WeightsEntry::TopLevel;
        weights = root;
    } else {
        std::vector<std::string> keys;
        for (const auto& [k, v] : root->dict)
            keys.push_back(k->kind == Value::Kind::String ? k->s : k->describe());
        throw fail("not an FEC checkpoint: no state_dict found (top-level entries: " + listSome(keys) + ")");
    }
    if (options.weights == WeightsChoice::Ema && info.weights != WeightsEntry::StateDictEma)
        throw fail("--weights ema requested but the checkpoint has no state_dict_ema");
    if (options.weights == WeightsChoice::StateDict && info.layout != CheckpointLayout::TimmTraining)
        info.noSeparateStateDict = true;

    StateDict dict;
    // Entries that are the same view of the same storage (a pickle may repeat one tensor under
    // many keys) share one copy, as torch.load shares them.
    std::map<std::string, at::Tensor> views;
    for (const auto& [k, v] : weights->dict) {
        if (k->kind != Value::Kind::String)
            continue;
        if (v->isNestedPickle())
            throw fail("tensor '" + k->s + "' is " + v->describe() + "; nothing in the file was executed");
        if (v->kind == Value::Kind::Object && (v->module.rfind("torch", 0) == 0 || v->module.rfind("numpy", 0) == 0))
            throw fail("tensor '" + k->s + "' is stored as " + v->module + "." + v->name +
                       " (quantized, sparse or NumPy data), which this reader does not support; nothing in the "
                       "file was executed");
        if (v->kind != Value::Kind::Tensor)
            continue;
        auto it = archive.storages.find(v->tensor.storageKey);
        if (it == archive.storages.end())
            throw fail("tensor '" + k->s + "' refers to a missing storage");
        const auto& t = v->tensor;
        std::string view =
            t.storageKey + "|" + std::to_string(t.offset) + "|" + shapeText(t.sizes) + shapeText(t.strides);
        auto cached = views.find(view);
        if (cached != views.end()) {
            dict.emplace_back(k->s, cached->second);
            continue;
        }
        try {
            auto tensor = toTensor(t, it->second);
            views.emplace(std::move(view), tensor);
            dict.emplace_back(k->s, std::move(tensor));
        } catch (const std::exception& e) {
            if (isAllocationFailure(e))
                throw fail("out of memory while reading tensor '" + k->s + "' " + shapeText(t.sizes));
            throw fail("tensor '" + k->s + "': " + e.what());
        }
    }
    dict = stripPrefixes(std::move(dict), info);

    // NaN or infinite weights are reported, not refused: the file may be worth inspecting.
    for (const auto& [key, tensor] : dict) {
        if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0)
            continue;
        int64_t finite = 0;
        try {
            const auto values = tensor.scalar_type() == at::kDouble ? tensor : tensor.to(at::kFloat);
            finite = at::isfinite(values).sum().item<int64_t>();
        } catch (const std::exception& e) {
            if (isAllocationFailure(e))
                throw fail("out of memory while checking tensor '" + key + "' for NaN values");
            throw;
        }
        if (finite < tensor.numel())
            info.nonFiniteTensors.emplace_back(key, tensor.numel() - finite);
    }

    // Our own metadata and the rest of the top level, described for `fec inspect`.
    for (const auto& [k, v] : root->dict) {
        if (k->kind != Value::Kind::String)
            continue;
        const auto& key = k->s;
        if (key == "state_dict" || key == "state_dict_ema" || weights == root)
            continue;
        if (key == "fec_config" && v->kind == Value::Kind::String) {
            try {
                info.inferred.config = FecConfig::fromJson(v->s);
                info.configStored = true;
            } catch (const std::invalid_argument& e) {
                throw fail(e.what());
            }
        } else if (key == "class_names") {
            info.classNames = stringList(v);
        } else if (key == "input_size" && v->kind == Value::Kind::Int) {
            // Refused before any image is resized to it: 8192 took 16 s and 3.8 GB per image.
            if (v->i < 32 || v->i > kMaxInputSide)
                throw fail("input_size " + std::to_string(v->i) + " is outside 32 to " + std::to_string(kMaxInputSide));
            info.inputSize = static_cast<int>(v->i);
        } else if (key == "preprocess" && v->kind == Value::Kind::String) {
            info.preprocess = v->s;
        } else if (key == "args") {
            try {
                info.argsJson = valueToJson(*v);
            } catch (const std::length_error& e) {
                throw fail("the training arguments ('args') are not read: " + std::string(e.what()));
            }
        } else if (key == "optimizer" || key == "model") {
            info.extras.emplace_back(key, v->describe());
        } else if (v->kind == Value::Kind::Int || v->kind == Value::Kind::Float || v->kind == Value::Kind::String ||
                   v->kind == Value::Kind::Bool) {
            info.extras.emplace_back(key, valueToJson(*v));
        } else {
            info.extras.emplace_back(key, v->describe());
        }
    }
    if (infoOut)
        *infoOut = std::move(info);
    return dict;
}

void loadWeights(FecModelImpl& model, const StateDict& weights)
{
    auto params = model.named_parameters();
    std::set<std::string> seen;
    std::vector<std::string> unexpected, mismatched;
    at::NoGradGuard noGrad;
    for (const auto& [key, tensor] : weights) {
        auto* param = params.find(key);
        if (!param) {
            unexpected.push_back(key);
            continue;
        }
        if (param->sizes() != tensor.sizes()) {
            mismatched.push_back(key + " (expected " + shapeText(param->sizes()) + ", found " +
                                 shapeText(tensor.sizes()) + ")");
            continue;
        }
        if (!at::isFloatingType(tensor.scalar_type()))
            throw std::invalid_argument("tensor '" + key + "' has integer type " +
                                        std::string(c10::toString(tensor.scalar_type())));
        param->copy_(tensor);
        seen.insert(key);
    }
    std::vector<std::string> missing;
    for (const auto& p : params)
        if (!seen.count(p.key()))
            missing.push_back(p.key());
    if (!mismatched.empty())
        throw std::invalid_argument("shape mismatch: " + listSome(mismatched, 3));
    if (seen.empty())
        throw std::invalid_argument("not an FEC state_dict (unexpected keys: " + listSome(unexpected) + ")");
    if (!missing.empty())
        throw std::invalid_argument("missing keys: " + listSome(missing));
    if (!unexpected.empty())
        throw std::invalid_argument("unexpected keys: " + listSome(unexpected));
}

LoadedModel loadCheckpoint(const std::string& path, const LoadOptions& options)
{
    LoadedModel out;
    auto weights = readStateDict(path, options, &out.info);
    auto& info = out.info;
    auto fail = [&](const std::string& why) -> CheckpointError { return CheckpointError(path + ": " + why); };

    ShapeMap shapes;
    for (const auto& [k, t] : weights)
        shapes[k] = t.sizes().vec();
    try {
        if (info.configStored) {
            auto stored = info.inferred.config;
            auto hints = options.hints;
            info.inferred = inferConfig(shapes, hints);  // validates the weights' structure
            FecConfig& c = info.inferred.config;
            // The stored architecture must describe these very weights (heads x head_dims of every
            // stage included); heads the user gave instead were checked against them above.
            FecConfig described = stored;
            if (!hints.heads.empty() || !hints.headDims.empty()) {
                described.heads = c.heads;
                described.headDims = c.headDims;
            }
            if (const auto problem = shapeProblems(described, shapes); !problem.empty())
                throw std::invalid_argument("fec_config (" + described.summary() +
                                            ") contradicts the weights: " + problem);
            if (hints.heads.empty() && hints.headDims.empty()) {
                c.heads = stored.heads;
                c.headDims = stored.headDims;
            }
            if (hints.proposals.empty()) {
                c.proposalW = stored.proposalW;
                c.proposalH = stored.proposalH;
            }
            if (hints.folds.empty()) {
                c.foldW = stored.foldW;
                c.foldH = stored.foldH;
            }
            c.variant = stored.variant;
            info.inferred.headsGuessed = false;
            info.inferred.proposalsDefaulted = false;
            info.inferred.notes = "architecture stored in the checkpoint";
        } else {
            ConfigHints hints = options.hints;
            // The checkpoint's own `arch` (or args.model) settles heads vs head_dim.
            // Both are descriptions of untrusted values: use them only when they are strings.
            for (const auto& [k, v] : info.extras) {
                if (k != "arch" || !hints.arch.empty())
                    continue;
                const auto arch = nlohmann::json::parse(v, nullptr, false);
                if (arch.is_string() && !arch.get<std::string>().empty())
                    hints.arch = arch.get<std::string>();
            }
            if (hints.arch.empty() && !info.argsJson.empty()) {
                auto args = nlohmann::json::parse(info.argsJson, nullptr, false);
                if (args.is_object() && args.contains("model") && args["model"].is_string())
                    hints.arch = args["model"].get<std::string>();
            }
            info.inferred = inferConfig(shapes, hints);
        }
        info.inferred.config.validate();
        if (const auto problem = shapeProblems(info.inferred.config, shapes); !problem.empty())
            throw std::invalid_argument(problem);
        if (info.inputSize > 0) {
            try {
                info.inferred.config.checkInputSize(info.inputSize, info.inputSize);
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument("input_size " + std::to_string(info.inputSize) + ": " + e.what());
            }
        }
        out.model = FecModel(info.inferred.config);
        loadWeights(*out.model, weights);
    } catch (const std::invalid_argument& e) {
        throw fail(e.what());
    } catch (const std::exception& e) {
        if (isAllocationFailure(e))
            throw fail("out of memory while building the model for these weights");
        if (const auto* error = dynamic_cast<const c10::Error*>(&e))
            throw fail(error->what_without_backtrace());
        throw;
    }
    out.model->eval();
    info.parameterCount = out.model->parameterCount();
    return out;
}

StateDict stateDictOf(FecModelImpl& model)
{
    StateDict out;
    for (const auto& p : model.named_parameters())
        out.emplace_back(p.key(), p.value().detach().to(at::kCPU).contiguous());
    return out;
}

void saveCheckpoint(const std::string& path, FecModelImpl& model, const SaveOptions& options)
{
    std::map<std::string, pickle::Storage> storages;
    if (options.extraStorages)
        storages = *options.extraStorages;
    auto dictOf = [&](const StateDict& sd) {
        auto d = Value::dictionary(/*ordered=*/true);
        for (const auto& [k, t] : sd)
            d->set(k, tensorValue(t, storages));
        return d;
    };
    const auto& config = model.config();
    auto root = Value::dictionary();
    root->set("epoch", Value::integer(options.epoch));
    root->set("arch", Value::string(config.variant));
    root->set("state_dict", dictOf(stateDictOf(model)));
    root->set("version", Value::integer(2));
    if (options.ema)
        root->set("state_dict_ema", dictOf(*options.ema));
    root->set("fec_config", Value::string(config.toJson()));
    if (!options.classNames.empty()) {
        auto names = Value::list();
        for (const auto& n : options.classNames)
            names->items.push_back(Value::string(n));
        root->set("class_names", names);
    }
    if (options.inputSize > 0)
        root->set("input_size", Value::integer(options.inputSize));
    if (!options.preprocess.empty())
        root->set("preprocess", Value::string(options.preprocess));
    for (const auto& [k, v] : options.extra)
        root->set(k, v);

    // PyTorch names the zip's top folder after the file; do the same.
    auto slash = path.find_last_of('/');
    std::string stem = slash == std::string::npos ? path : path.substr(slash + 1);
    for (auto ext : {".tar", ".pth", ".pt"}) {
        const std::string e(ext);
        if (stem.size() > e.size() && stem.compare(stem.size() - e.size(), e.size(), e) == 0)
            stem.resize(stem.size() - e.size());
    }
    std::string archiveName;
    for (char ch : stem)
        archiveName += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-') ? ch : '_';
    if (archiveName.empty())
        archiveName = "archive";
    try {
        writeFileAtomic(path, pickle::writeTorchZip(*root, storages, archiveName));
    } catch (const std::exception& e) {
        throw CheckpointError(e.what());
    }
}

int inputSizeFor(const CheckpointInfo& info, int requested)
{
    if (requested > 0)
        return requested;
    return info.inputSize > 0 ? info.inputSize : kDefaultInputSize;
}

std::string preprocessFor(const CheckpointInfo& info, const std::string& requested, const std::string& fallback)
{
    if (!requested.empty())
        return requested;
    return !info.preprocess.empty() ? info.preprocess : fallback;
}

}  // namespace fec
