// The unpickler's allow-list: known globals mapped to safe builders (tensors, dicts, bytes), others inert.
#include "pickle_unpickler.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <unordered_set>

#include "pickle_internal.h"

namespace fec::pickle::detail {

namespace {

const DType kAllDTypes[] = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                            DType::Int32,   DType::Int16,   DType::Int8,    DType::UInt8,    DType::Bool};

// What a global may be turned into; everything else stays an inert value.
enum class Builtin {
    Unknown,
    Opaque,
    OrderedDict,
    DefaultDict,
    Counter,
    Set,
    Bytes,
    CodecsEncode,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildFromTypeV2,
    TorchSize,
    Reconstructor,
    StorageType,
};

struct GlobalInfo {
    Builtin kind = Builtin::Unknown;
    DType dtype = DType::Float32;
};

GlobalInfo classifyGlobal(const std::string& module, const std::string& name)
{
    GlobalInfo g;
    const bool builtins = module == "builtins" || module == "__builtin__";
    if (module == "collections" && name == "OrderedDict")
        g.kind = Builtin::OrderedDict;
    else if (module == "collections" && name == "defaultdict")
        g.kind = Builtin::DefaultDict;
    else if (module == "collections" && name == "Counter")
        g.kind = Builtin::Counter;
    else if (builtins && (name == "set" || name == "frozenset"))
        g.kind = Builtin::Set;
    else if (builtins && (name == "bytes" || name == "bytearray"))
        g.kind = Builtin::Bytes;
    else if (builtins && (name == "slice" || name == "object" || name == "complex"))
        g.kind = Builtin::Opaque;
    else if (module == "_codecs" && name == "encode")
        g.kind = Builtin::CodecsEncode;
    else if ((module == "copyreg" || module == "copy_reg") && name == "_reconstructor")
        g.kind = Builtin::Reconstructor;
    else if (module == "torch._utils" && name == "_rebuild_tensor_v2")
        g.kind = Builtin::RebuildTensorV2;
    else if (module == "torch._utils" && name == "_rebuild_tensor")
        g.kind = Builtin::RebuildTensor;
    else if (module == "torch._utils" && (name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state"))
        g.kind = Builtin::RebuildParameter;
    else if (module == "torch._tensor" && name == "_rebuild_from_type_v2")
        g.kind = Builtin::RebuildFromTypeV2;
    else if (module == "torch" && name == "Size")
        g.kind = Builtin::TorchSize;
    else if ((module == "torch" || module == "torch.storage") &&
             (name == "UntypedStorage" || name == "_UntypedStorage")) {
        g.kind = Builtin::StorageType;
        g.dtype = DType::UInt8;
    } else if (module == "torch" || module == "torch.cuda") {
        for (DType d : kAllDTypes)
            if (name == storageClassName(d)) {
                g.kind = Builtin::StorageType;
                g.dtype = d;
            }
        static const std::unordered_set<std::string> opaque = {
            // dtypes, layouts, memory formats and a few classes: harmless as plain names
            "float32",
            "float",
            "float64",
            "double",
            "float16",
            "half",
            "bfloat16",
            "int64",
            "long",
            "int32",
            "int",
            "int16",
            "short",
            "int8",
            "uint8",
            "bool",
            "complex64",
            "complex128",
            "strided",
            "sparse_coo",
            "contiguous_format",
            "channels_last",
            "preserve_format",
            "device",
            "Tensor"};
        if (g.kind == Builtin::Unknown && module == "torch" && opaque.count(name))
            g.kind = Builtin::Opaque;
    } else if ((module == "torch.nn.parameter" && name == "Parameter") ||
               (module == "torch.storage" && name == "TypedStorage") ||
               (module == "torch.serialization" && name == "_get_layout")) {
        g.kind = Builtin::Opaque;
    }
    return g;
}

}  // namespace

ValuePtr Unpickler::makeGlobal(const std::string& module, const std::string& name)
{
    if (module.empty() || name.empty() || module.size() > 1024 || name.size() > 1024)
        fail("malformed global name" + where());
    auto v = make(Value::Kind::Global);
    v->module = module;
    v->name = name;
    if (classifyGlobal(module, name).kind == Builtin::Unknown) {
        std::string full = module + "." + name;
        if (ignoredSeen_.insert(full).second && std::find(ignored_.begin(), ignored_.end(), full) == ignored_.end())
            ignored_.push_back(std::move(full));
    }
    return v;
}

ValuePtr Unpickler::makeObject(const Value& cls, const std::vector<ValuePtr>& args)
{
    auto v = make(Value::Kind::Object);
    v->module = cls.module;
    v->name = cls.name;
    countItems(args.size());
    v->items = args;
    return v;
}

int64_t Unpickler::intArg(const ValuePtr& v, const char* what)
{
    if (v->kind == Value::Kind::Int)
        return v->i;
    if (v->kind == Value::Kind::Bool)
        return v->b ? 1 : 0;
    fail(std::string(what) + " is " + v->describe() + ", not an integer" + where());
}

std::vector<int64_t> Unpickler::intList(const ValuePtr& v, const char* what)
{
    if (v->kind != Value::Kind::Tuple && v->kind != Value::Kind::List)
        fail(std::string("tensor ") + what + " is " + v->describe() + ", not a tuple" + where());
    if (v->items.size() > limits_.maxTensorDims)
        fail("tensor has " + std::to_string(v->items.size()) + " dimensions, more than the limit of " +
             std::to_string(limits_.maxTensorDims) + where());
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
        const int64_t x = intArg(item, what);
        if (x < 0)
            fail(std::string("negative tensor ") + what + " " + std::to_string(x) + where());
        out.push_back(x);
    }
    return out;
}

bool Unpickler::truthy(const ValuePtr& v)
{
    switch (v->kind) {
    case Value::Kind::None:
        return false;
    case Value::Kind::Bool:
        return v->b;
    case Value::Kind::Int:
        return v->i != 0;
    default:
        fail("requires_grad is " + v->describe() + where());
    }
}

ValuePtr Unpickler::persistentLoad(const ValuePtr& pid)
{
    if (pid->kind != Value::Kind::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Value::Kind::String ||
        pid->items[0]->s != "storage")
        fail("unsupported persistent id " + pid->describe() + where());
    const auto& items = pid->items;
    const Value& type = *items[1];
    const GlobalInfo g = type.kind == Value::Kind::Global ? classifyGlobal(type.module, type.name) : GlobalInfo{};
    if (g.kind != Builtin::StorageType)
        fail("unsupported storage type " +
             (type.kind == Value::Kind::Global ? type.module + "." + type.name : type.describe()) + where());
    std::string key;
    if (items[2]->kind == Value::Kind::String)
        key = items[2]->s;
    else if (items[2]->kind == Value::Kind::Int)
        key = std::to_string(items[2]->i);
    else
        fail("storage key is " + items[2]->describe() + where());
    if (key.empty() || key.size() > 256 || key.find('\0') != std::string::npos)
        fail("malformed storage key " + quotedText(key) + where());
    if (items[3]->kind != Value::Kind::String)
        fail("storage location is " + items[3]->describe() + where());
    const int64_t numel = intArg(items[4], "storage size");
    int64_t bytes = 0;
    if (numel < 0 || !checkedMul(numel, static_cast<int64_t>(dtypeSize(g.dtype)), bytes) ||
        static_cast<uint64_t>(bytes) > limits_.maxFileBytes)
        fail("storage '" + key + "' claims " + std::to_string(numel) + " elements, more than a file may hold" +
             where());

    int64_t viewOffset = 0, viewNumel = numel;
    if (items.size() > 5 && items[5]->kind != Value::Kind::None) {
        // Legacy storage views: (view key, offset, size) inside the root storage `key`.
        const auto& view = items[5];
        if (view->kind != Value::Kind::Tuple || view->items.size() != 3)
            fail("malformed storage view " + view->describe() + where());
        viewOffset = intArg(view->items[1], "storage view offset");
        viewNumel = intArg(view->items[2], "storage view size");
        int64_t end = 0;
        if (viewOffset < 0 || viewNumel < 0 || !checkedAdd(viewOffset, viewNumel, end) || end > numel)
            fail("storage view of '" + key + "' lies outside the storage" + where());
    }

    auto it = storages_.find(key);
    if (it == storages_.end()) {
        charge(key.size() + 160);
        storageBytes_ += bytes;  // each below maxFileBytes; validated against the file later
        Storage st;
        st.dtype = g.dtype;
        st.numel = numel;
        storages_.emplace(key, std::move(st));
    } else if (it->second.dtype != g.dtype || it->second.numel != numel) {
        fail("storage '" + key + "' is used as " + dtypeName(it->second.dtype) + " [" +
             std::to_string(it->second.numel) + "] and as " + dtypeName(g.dtype) + " [" + std::to_string(numel) + "]" +
             where());
    }

    auto v = make(Value::Kind::Tensor);
    v->module = "torch";
    v->name = storageClassName(g.dtype);
    v->tensor.storageKey = key;
    v->tensor.dtype = g.dtype;
    v->tensor.location = items[3]->s;
    v->tensor.storageNumel = numel;
    v->tensor.offset = viewOffset;
    v->tensor.sizes = {viewNumel};
    v->tensor.strides = {1};
    return v;
}

ValuePtr Unpickler::rebuildTensor(const std::vector<ValuePtr>& args, bool v2)
{
    if (args.size() < 4)
        fail("tensor rebuild has " + std::to_string(args.size()) + " arguments, expected at least 4" + where());
    const Value& storage = *args[0];
    if (storage.isNestedPickle())
        fail("tensor data" + where() + " is " + storage.describe());
    if (!isStorageValue(storage))
        fail("tensor data is " + storage.describe() + ", not a storage" + where());
    const int64_t offset = intArg(args[1], "storage offset");
    const auto sizes = intList(args[2], "size");
    const auto strides = intList(args[3], "stride");
    if (sizes.size() != strides.size())
        fail("tensor has " + std::to_string(sizes.size()) + " sizes but " + std::to_string(strides.size()) +
             " strides" + where());
    if (offset < 0)
        fail("negative tensor storage offset" + where());
    const int64_t limit = storage.tensor.sizes.at(0);
    const bool empty = std::find(sizes.begin(), sizes.end(), 0) != sizes.end();
    int64_t last = offset;
    bool ok = true;
    if (!empty) {
        for (std::size_t d = 0; d < sizes.size() && ok; ++d) {
            int64_t extent = 0;
            ok = checkedMul(sizes[d] - 1, strides[d], extent) && checkedAdd(last, extent, last);
        }
    }
    if (!ok || (empty ? offset > limit : last >= limit))
        fail("tensor of size " + describeShape(sizes) + " at offset " + std::to_string(offset) +
             " exceeds its storage '" + storage.tensor.storageKey + "' of " + std::to_string(limit) + " elements" +
             where());

    // A tensor may legally repeat its storage (zero strides), so its size is not bounded by
    // the file; the sum over all tensors is, relative to the storages the file must hold.
    int64_t bytes = static_cast<int64_t>(dtypeSize(storage.tensor.dtype));
    bool overflow = false;
    for (int64_t size : sizes)
        overflow = overflow || !checkedMul(bytes, size, bytes);
    overflow = overflow || !checkedAdd(tensorBytes_, bytes, tensorBytes_);
    if (overflow || tensorBytes_ > tensorByteBudget())
        fail("the tensors of this pickle would take " +
             (overflow ? std::string("more than 2^63 bytes") : std::to_string(tensorBytes_ >> 20) + " MiB") +
             ", far more than the storages in the file (tensor of size " + describeShape(sizes) + " with strides " +
             describeShape(strides) + ")" + where());

    auto v = make(Value::Kind::Tensor);
    v->tensor = storage.tensor;
    v->tensor.offset = storage.tensor.offset + offset;
    v->tensor.sizes = sizes;
    v->tensor.strides = strides;
    v->tensor.requiresGrad = v2 && args.size() > 4 ? truthy(args[4]) : false;
    charge(16 * sizes.size());
    return v;
}

// Materialised tensors may take this much: a few times what the declared storages hold
// (shared and expanded views are legal) plus a fixed allowance.
int64_t Unpickler::tensorByteBudget() const
{
    const double budget =
        limits_.maxTensorExpansion * static_cast<double>(storageBytes_) + static_cast<double>(limits_.minTensorBytes);
    return budget >= 9.0e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(budget);
}

std::string Unpickler::describeShape(const std::vector<int64_t>& sizes)
{
    std::string s = "[";
    for (std::size_t k = 0; k < sizes.size(); ++k)
        s += (k ? ", " : "") + std::to_string(sizes[k]);
    return s + "]";
}

std::string Unpickler::latin1Bytes(const std::string& utf8)
{
    if (std::all_of(utf8.begin(), utf8.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
        return utf8;
    std::string out;
    out.reserve(utf8.size());
    const auto* p = reinterpret_cast<const unsigned char*>(utf8.data());
    for (std::size_t i = 0; i < utf8.size(); ++i) {
        if (p[i] < 0x80) {
            out += static_cast<char>(p[i]);
        } else if ((p[i] == 0xc2 || p[i] == 0xc3) && i + 1 < utf8.size()) {
            out += static_cast<char>(((p[i] & 0x03) << 6) | (p[i + 1] & 0x3f));
            ++i;
        } else {
            fail("latin-1 encoding of a character above U+00FF" + where());
        }
    }
    return out;
}

ValuePtr Unpickler::toBytes(const std::vector<ValuePtr>& args, const std::string& fn)
{
    if (args.empty())
        return makeBytes("");
    const Value& a = *args[0];
    // Every call copies its argument: a shared string converted many times must count.
    charge(a.s.size());
    spend(a.s.size() / 4);
    if (a.kind == Value::Kind::Bytes && args.size() == 1)
        return makeBytes(a.s);
    if (a.kind == Value::Kind::String && args.size() >= 2 && args[1]->kind == Value::Kind::String) {
        std::string enc = args[1]->s;
        std::transform(enc.begin(), enc.end(), enc.begin(), [](unsigned char c) { return std::tolower(c); });
        if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1" || enc == "iso8859-1" || enc == "l1")
            return makeBytes(latin1Bytes(a.s));
        if (enc == "utf8" || enc == "utf-8" || enc == "ascii")
            return makeBytes(a.s);
        fail(fn + " with encoding " + quotedText(args[1]->s) + " is not supported" + where());
    }
    fail(fn + " with arguments (" + a.describe() + ", ...) is not supported" + where());
}

ValuePtr Unpickler::pairsToDict(ValuePtr d, const ValuePtr& source)
{
    spend(source->items.size() + source->dict.size());
    if (source->kind == Value::Kind::Dict) {
        for (const auto& [k, v] : source->dict)
            dictSet(d, k, v);
    } else if (source->kind == Value::Kind::List || source->kind == Value::Kind::Tuple) {
        for (const auto& pair : source->items) {
            if ((pair->kind != Value::Kind::Tuple && pair->kind != Value::Kind::List) || pair->items.size() != 2)
                fail("dictionary item is " + pair->describe() + ", not a pair" + where());
            dictSet(d, pair->items[0], pair->items[1]);
        }
    } else {
        fail("cannot build a dictionary from " + source->describe() + where());
    }
    return d;
}

// REDUCE / NEWOBJ: `fn(*args)` for the few callables with a safe builder; any other global
// gives an inert Object. Nothing is ever executed.
ValuePtr Unpickler::call(const ValuePtr& fn, const ValuePtr& argsValue, bool newObj, int depth)
{
    if (fn->kind != Value::Kind::Global)
        fail("the pickle calls " + fn->describe() + ", which is not a class or function" + where());
    if (argsValue->kind != Value::Kind::Tuple && argsValue->kind != Value::Kind::List)
        fail("call arguments are " + argsValue->describe() + ", not a tuple" + where());
    const auto& args = argsValue->items;
    const std::string full = fn->module + "." + fn->name;
    const GlobalInfo g = classifyGlobal(fn->module, fn->name);
    switch (g.kind) {
    case Builtin::Unknown:
    case Builtin::Opaque:
    case Builtin::StorageType:
        return makeObject(*fn, args);
    case Builtin::OrderedDict:
    case Builtin::Counter:
    case Builtin::DefaultDict: {
        auto d = make(Value::Kind::Dict);
        d->ordered = g.kind == Builtin::OrderedDict;
        const std::size_t first = g.kind == Builtin::DefaultDict ? 1 : 0;
        if (args.size() > first + 1)
            fail(full + " with " + std::to_string(args.size()) + " arguments is not supported" + where());
        if (args.size() == first + 1)
            pairsToDict(d, args[first]);
        return d;
    }
    case Builtin::Set: {
        if (args.empty())
            return make(Value::Kind::List);
        if (args.size() != 1 || (args[0]->kind != Value::Kind::List && args[0]->kind != Value::Kind::Tuple))
            fail(full + " with arguments " + argsValue->describe() + " is not supported" + where());
        return makeSequence(Value::Kind::List, args[0]->items);
    }
    case Builtin::Bytes:
        return toBytes(args, full);
    default:
        break;
    }
    if (newObj)
        fail("NEWOBJ on the function " + full + where());
    switch (g.kind) {
    case Builtin::CodecsEncode:
        if (args.size() < 1 || args.size() > 2 || args[0]->kind != Value::Kind::String)
            fail("_codecs.encode with arguments " + argsValue->describe() + " is not supported" + where());
        if (args.size() == 1) {
            charge(args[0]->s.size());
            spend(args[0]->s.size() / 4);
            return makeBytes(args[0]->s);
        }
        return toBytes(args, full);
    case Builtin::RebuildTensorV2:
        return rebuildTensor(args, true);
    case Builtin::RebuildTensor:
        return rebuildTensor(args, false);
    case Builtin::RebuildParameter: {
        if (args.size() < 2 || args[0]->kind != Value::Kind::Tensor || isStorageValue(*args[0]))
            fail(full + " without a tensor argument" + where());
        auto v = make(Value::Kind::Tensor);
        v->tensor = args[0]->tensor;
        v->tensor.requiresGrad = truthy(args[1]);
        return v;
    }
    case Builtin::RebuildFromTypeV2: {
        // (func, new_type, args, state): the tensor is func(*args); the subclass is dropped.
        if (args.size() < 3 || depth > 0)
            fail(full + " with arguments " + argsValue->describe() + " is not supported" + where());
        return call(args[0], args[2], false, depth + 1);
    }
    case Builtin::TorchSize:
        if (args.size() != 1 || (args[0]->kind != Value::Kind::Tuple && args[0]->kind != Value::Kind::List))
            fail("torch.Size with arguments " + argsValue->describe() + " is not supported" + where());
        return makeSequence(Value::Kind::Tuple, args[0]->items);
    case Builtin::Reconstructor: {
        if (args.size() != 3 || args[0]->kind != Value::Kind::Global)
            fail("copyreg._reconstructor with arguments " + argsValue->describe() + " is not supported" + where());
        auto v = make(Value::Kind::Object);
        v->module = args[0]->module;
        v->name = args[0]->name;
        if (args[2]->kind != Value::Kind::None)
            v->state = args[2];
        return v;
    }
    default:
        fail("cannot call " + full + where());
    }
}

}  // namespace fec::pickle::detail
