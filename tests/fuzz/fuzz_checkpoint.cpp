// libFuzzer target: bytes -> pickle::readTorchFile, the reader loadCheckpoint() uses, and the
// bare unpickler. Any input must end in a value or a FormatError; an accepted tensor must lie
// inside its storage (checked here by touching its first and last element).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <unordered_set>
#include <vector>

#include "fec/pickle.h"

namespace {

using namespace fec::pickle;

void checkTensors(const Archive& archive)
{
    std::vector<const Value*> todo{archive.root.get()};
    std::unordered_set<const Value*> seen;
    while (!todo.empty()) {
        const Value* v = todo.back();
        todo.pop_back();
        if (!v || !seen.insert(v).second)
            continue;
        for (const auto& item : v->items)
            todo.push_back(item.get());
        for (const auto& [k, val] : v->dict) {
            todo.push_back(k.get());
            todo.push_back(val.get());
        }
        todo.push_back(v->state.get());
        if (v->kind != Value::Kind::Tensor)
            continue;
        const TensorRef& t = v->tensor;
        const auto it = archive.storages.find(t.storageKey);
        if (it == archive.storages.end())
            std::abort();  // a tensor without its storage was accepted
        const Storage& s = it->second;
        const std::size_t element = dtypeSize(s.dtype);
        if (s.dtype != t.dtype || s.bytes.size() != static_cast<std::size_t>(s.numel) * element ||
            t.sizes.size() != t.strides.size())
            std::abort();
        int64_t last = t.offset;
        bool empty = false;
        for (std::size_t d = 0; d < t.sizes.size(); ++d) {
            if (t.sizes[d] < 0 || t.strides[d] < 0)
                std::abort();
            empty |= t.sizes[d] == 0;
            if (t.sizes[d] > 0)
                last += (t.sizes[d] - 1) * t.strides[d];
        }
        if (empty)
            continue;
        if (t.offset < 0 || last >= s.numel)
            std::abort();
        // ASan reports these reads if the bounds above were computed wrongly.
        volatile uint8_t sink = s.bytes[static_cast<std::size_t>(t.offset) * element];
        sink = s.bytes[static_cast<std::size_t>(last) * element + element - 1];
        (void)sink;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size)
{
    Limits limits;
    // Keep one input's work small enough for many runs per second, and any over-allocation
    // visible to libFuzzer's -malloc_limit_mb.
    limits.maxPickleOps = 200'000;
    limits.maxContainerItems = 200'000;
    limits.maxPickleMemory = 64ull << 20;
    try {
        const Archive archive = readTorchFile(std::vector<uint8_t>(data, data + size), limits);
        checkTensors(archive);
    } catch (const FormatError&) {
    }
    try {
        std::map<std::string, Storage> storages;
        std::vector<std::string> ignored;
        unpickle(data, size, &storages, &ignored, limits);
    } catch (const FormatError&) {
    }
    return 0;
}
