// writeTorchZip: values and storages as a protocol-2 pickle in a zip checkpoint that torch.load reads.
#include "fec/pickle.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "pickle_internal.h"

namespace fec::pickle::detail {

namespace {

class PickleWriter {
public:
    explicit PickleWriter(const std::map<std::string, Storage>& storages) : storages_(storages) {}

    std::vector<uint8_t> pickle(const Value& root)
    {
        out_ = {op::PROTO, 2};
        value(root, 0);
        out_.push_back(op::STOP);
        return std::move(out_);
    }

    const std::map<std::string, const Storage*>& usedStorages() const { return used_; }

private:
    [[noreturn]] static void refuse(const std::string& why)
    {
        throw std::invalid_argument("cannot write checkpoint: " + why);
    }

    void memoRef(uint8_t shortOp, uint8_t longOp, uint32_t index)
    {
        if (index < 256) {
            out_.push_back(shortOp);
            out_.push_back(static_cast<uint8_t>(index));
        } else {
            out_.push_back(longOp);
            put32(out_, index);
        }
    }

    void global(const std::string& module, const std::string& name)
    {
        const std::string key = module + "\n" + name;
        auto it = globals_.find(key);
        if (it != globals_.end()) {
            memoRef(op::BINGET, op::LONG_BINGET, it->second);
            return;
        }
        out_.push_back(op::GLOBAL);
        out_.insert(out_.end(), key.begin(), key.end());
        out_.push_back('\n');
        const auto index = static_cast<uint32_t>(globals_.size());
        globals_.emplace(key, index);
        memoRef(op::BINPUT, op::LONG_BINPUT, index);
    }

    void integer(int64_t v)
    {
        if (v >= 0 && v <= 0xff) {
            out_.push_back(op::BININT1);
            out_.push_back(static_cast<uint8_t>(v));
        } else if (v >= 0 && v <= 0xffff) {
            out_.push_back(op::BININT2);
            put16(out_, static_cast<uint64_t>(v));
        } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
            out_.push_back(op::BININT);
            put32(out_, static_cast<uint64_t>(v));
        } else {
            // LONG1: shortest little-endian two's complement.
            uint8_t bytes[8];
            for (int k = 0; k < 8; ++k)
                bytes[k] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * k));
            int n = 8;
            while (n > 1 && ((bytes[n - 1] == 0x00 && !(bytes[n - 2] & 0x80)) ||
                             (bytes[n - 1] == 0xff && (bytes[n - 2] & 0x80))))
                --n;
            out_.push_back(op::LONG1);
            out_.push_back(static_cast<uint8_t>(n));
            out_.insert(out_.end(), bytes, bytes + n);
        }
    }

    void string(const std::string& s)
    {
        if (!validUtf8(s))
            refuse("string " + quotedText(s) + " is not valid UTF-8");
        if (s.size() > 0xffffffffu)
            refuse("string too long");
        out_.push_back(op::BINUNICODE);
        put32(out_, s.size());
        out_.insert(out_.end(), s.begin(), s.end());
    }

    void tuple(const std::vector<int64_t>& xs)
    {
        if (xs.empty()) {
            out_.push_back(op::EMPTY_TUPLE);
            return;
        }
        if (xs.size() > 3)
            out_.push_back(op::MARK);
        for (int64_t x : xs)
            integer(x);
        out_.push_back(xs.size() > 3 ? op::TUPLE : static_cast<uint8_t>(op::TUPLE1 - 1 + xs.size()));
    }

    void tensor(const TensorRef& t)
    {
        auto it = storages_.find(t.storageKey);
        if (it == storages_.end())
            refuse("tensor refers to storage '" + t.storageKey + "', which is not given");
        const Storage& st = it->second;
        if (t.storageKey.empty() || t.storageKey.find_first_of(std::string("\0/", 2)) != std::string::npos)
            refuse("storage key " + quotedText(t.storageKey) + " cannot be a zip entry name");
        if (st.dtype != t.dtype)
            refuse("tensor of type " + dtypeName(t.dtype) + " refers to storage '" + t.storageKey + "' of type " +
                   dtypeName(st.dtype));
        if (st.numel < 0 || st.bytes.size() != static_cast<uint64_t>(st.numel) * dtypeSize(st.dtype))
            refuse("storage '" + t.storageKey + "' holds " + std::to_string(st.bytes.size()) + " bytes for " +
                   std::to_string(st.numel) + " elements");
        if (t.sizes.size() != t.strides.size())
            refuse("tensor sizes and strides differ in length");
        int64_t last = t.offset;
        bool ok = t.offset >= 0;
        bool empty = false;
        for (std::size_t d = 0; d < t.sizes.size(); ++d) {
            ok = ok && t.sizes[d] >= 0 && t.strides[d] >= 0;
            empty = empty || t.sizes[d] == 0;
        }
        for (std::size_t d = 0; d < t.sizes.size() && ok && !empty; ++d) {
            int64_t extent = 0;
            ok = checkedMul(t.sizes[d] - 1, t.strides[d], extent) && checkedAdd(last, extent, last);
        }
        if (!ok || (empty ? t.offset > st.numel : last >= st.numel))
            refuse("tensor exceeds its storage '" + t.storageKey + "'");
        used_.emplace(t.storageKey, &st);

        global("torch._utils", "_rebuild_tensor_v2");
        out_.push_back(op::MARK);
        out_.push_back(op::MARK);
        string("storage");
        global("torch", storageClassName(st.dtype));
        string(t.storageKey);
        string("cpu");
        integer(st.numel);
        out_.push_back(op::TUPLE);
        out_.push_back(op::BINPERSID);
        integer(t.offset);
        tuple(t.sizes);
        tuple(t.strides);
        out_.push_back(t.requiresGrad ? op::NEWTRUE : op::NEWFALSE);
        global("collections", "OrderedDict");
        out_.push_back(op::EMPTY_TUPLE);
        out_.push_back(op::REDUCE);
        out_.push_back(op::TUPLE);
        out_.push_back(op::REDUCE);
    }

    void value(const Value& v, int depth)
    {
        if (depth > 1000)
            refuse("values nest deeper than 1000 levels (a container inside itself?)");
        switch (v.kind) {
        case Value::Kind::None:
            out_.push_back(op::NONE);
            return;
        case Value::Kind::Bool:
            out_.push_back(v.b ? op::NEWTRUE : op::NEWFALSE);
            return;
        case Value::Kind::Int:
            integer(v.i);
            return;
        case Value::Kind::Float: {
            uint64_t bits;
            std::memcpy(&bits, &v.f, sizeof bits);
            out_.push_back(op::BINFLOAT);
            for (int k = 7; k >= 0; --k)
                out_.push_back(static_cast<uint8_t>(bits >> (8 * k)));
            return;
        }
        case Value::Kind::String:
            string(v.s);
            return;
        case Value::Kind::Bytes: {
            // Protocol 2 spelling of bytes: _codecs.encode(latin-1 text, "latin1").
            std::string text;
            for (unsigned char c : v.s)
                appendUtf8(text, c);
            global("_codecs", "encode");
            string(text);
            string("latin1");
            out_.push_back(op::TUPLE2);
            out_.push_back(op::REDUCE);
            return;
        }
        case Value::Kind::List:
        case Value::Kind::Tuple: {
            const bool list = v.kind == Value::Kind::List;
            const auto& items = v.items;
            if (!list && items.size() <= 3) {
                for (const auto& item : items)
                    value(*item, depth + 1);
                out_.push_back(items.empty() ? op::EMPTY_TUPLE : static_cast<uint8_t>(op::TUPLE1 - 1 + items.size()));
                return;
            }
            if (!list) {
                out_.push_back(op::MARK);
                for (const auto& item : items)
                    value(*item, depth + 1);
                out_.push_back(op::TUPLE);
                return;
            }
            out_.push_back(op::EMPTY_LIST);
            for (std::size_t k = 0; k < items.size(); k += 1000) {
                const std::size_t end = std::min(items.size(), k + 1000);
                if (end - k == 1) {
                    value(*items[k], depth + 1);
                    out_.push_back(op::APPEND);
                    continue;
                }
                out_.push_back(op::MARK);
                for (std::size_t j = k; j < end; ++j)
                    value(*items[j], depth + 1);
                out_.push_back(op::APPENDS);
            }
            return;
        }
        case Value::Kind::Dict: {
            if (v.ordered) {
                global("collections", "OrderedDict");
                out_.push_back(op::EMPTY_TUPLE);
                out_.push_back(op::REDUCE);
            } else {
                out_.push_back(op::EMPTY_DICT);
            }
            for (std::size_t k = 0; k < v.dict.size(); k += 1000) {
                const std::size_t end = std::min(v.dict.size(), k + 1000);
                if (end - k > 1)
                    out_.push_back(op::MARK);
                for (std::size_t j = k; j < end; ++j) {
                    value(*v.dict[j].first, depth + 1);
                    value(*v.dict[j].second, depth + 1);
                }
                out_.push_back(end - k > 1 ? op::SETITEMS : op::SETITEM);
            }
            return;
        }
        case Value::Kind::Tensor:
            if (!v.module.empty())
                refuse("bare storages cannot be written, only tensors");
            tensor(v.tensor);
            return;
        case Value::Kind::Global:
            refuse("the global " + v.module + "." + v.name + " cannot be written");
        case Value::Kind::Object:
            refuse("objects such as " + v.describe() + " cannot be written");
        }
        refuse("unknown value kind");
    }

    const std::map<std::string, Storage>& storages_;
    std::map<std::string, const Storage*> used_;
    std::map<std::string, uint32_t> globals_;
    std::vector<uint8_t> out_;
};

}  // namespace

}  // namespace fec::pickle::detail

namespace fec::pickle {

using namespace detail;

std::vector<uint8_t> writeTorchZip(const Value& root, const std::map<std::string, Storage>& storages,
                                   const std::string& archiveName)
{
    return writeTorchZip(root, storages, archiveName, ZipWriteOptions{});
}

std::vector<uint8_t> writeTorchZip(const Value& root, const std::map<std::string, Storage>& storages,
                                   const std::string& archiveName, const ZipWriteOptions& options)
{
    if (archiveName.empty() || archiveName.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
        throw std::invalid_argument("cannot write checkpoint: bad archive name " + quotedText(archiveName));
    PickleWriter writer(storages);
    const std::vector<uint8_t> pkl = writer.pickle(root);
    static const std::string byteorder = "little";
    static const std::string version = "3\n";

    std::vector<ZipRecord> records;
    records.push_back({archiveName + "/data.pkl", pkl.data(), pkl.size()});
    records.push_back(
        {archiveName + "/byteorder", reinterpret_cast<const uint8_t*>(byteorder.data()), byteorder.size()});
    for (const auto& [key, storage] : writer.usedStorages())
        records.push_back({archiveName + "/data/" + key, storage->bytes.data(), storage->bytes.size()});
    records.push_back({archiveName + "/version", reinterpret_cast<const uint8_t*>(version.data()), version.size()});
    return writeZip(records, options.forceZip64);
}

}  // namespace fec::pickle
