// readTorchFile: tells the zip and legacy (pre-zip) torch.save formats apart, and reads the legacy one.
#include "fec/pickle.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "fec/atomic_file.h"
#include "pickle_internal.h"

namespace fec::pickle::detail {

namespace {

const uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool isLegacyMagic(const Value& v)
{
    return v.kind == Value::Kind::Object && v.module == "builtins" && v.name == "int" &&
           v.s == std::string(reinterpret_cast<const char*>(kLegacyMagic), sizeof kLegacyMagic);
}

// Python's tarfile, which torch.load tries before reading a legacy pickle, takes a file whose
// first 512-byte block carries a matching checksum (unsigned or signed byte sum, the field itself
// counted as spaces). The field is parsed leniently: accepting too much only refuses more.
bool isTarHeader(const uint8_t* d, std::size_t n)
{
    if (n < 512)
        return false;
    int64_t unsignedSum = 8 * ' ', signedSum = 8 * ' ';
    for (std::size_t i = 0; i < 512; ++i) {
        if (i >= 148 && i < 156)
            continue;
        unsignedSum += d[i];
        signedSum += static_cast<int8_t>(d[i]);
    }
    const uint8_t* f = d + 148;
    int64_t value = 0;
    if (f[0] == 0x80 || f[0] == 0xff) {
        for (int i = 1; i < 8; ++i)
            value = (value << 8) | f[i];
        if (f[0] == 0xff)
            value -= int64_t{1} << 56;
    } else {
        for (int i = 0; i < 8 && f[i] != 0; ++i) {
            const char c = static_cast<char>(f[i]);
            if (c >= '0' && c <= '7')
                value = value * 8 + (c - '0');
            else if (!std::isspace(static_cast<unsigned char>(c)) && c != '_' && c != '+' && c != 'o' && c != 'O')
                return false;
        }
    }
    return value == unsignedSum || value == signedSum;
}

// torch.load runs every pickle of a legacy file (magic number, protocol version, system
// information, data, storage keys) in full: the globals of each are reported, not just the data's.
Archive readLegacyCheckpoint(const uint8_t* d, std::size_t n, std::size_t pos, std::vector<std::string> magicGlobals,
                             const Limits& limits)
{
    Archive archive;
    archive.format = ContainerFormat::Legacy;
    archive.ignoredGlobals = std::move(magicGlobals);
    auto& globals = archive.ignoredGlobals;
    std::size_t used = 0;
    std::map<std::string, Storage> noStorages;

    auto version = unpickle(d + pos, n - pos, &noStorages, &globals, limits, &used);
    pos += used;
    if (version->kind != Value::Kind::Int || version->i != 1001)
        fail("unsupported legacy checkpoint protocol version " + version->describe());

    auto sysInfo = unpickle(d + pos, n - pos, &noStorages, &globals, limits, &used);
    pos += used;
    if (sysInfo->kind != Value::Kind::Dict)
        fail("malformed legacy checkpoint (system information is " + sysInfo->describe() + ")");
    if (auto little = sysInfo->get("little_endian"); little && little->kind == Value::Kind::Bool && !little->b)
        fail("big-endian legacy checkpoints are not supported");
    if (!noStorages.empty())
        fail("malformed legacy checkpoint (storages in its header)");

    archive.root = unpickle(d + pos, n - pos, &archive.storages, &globals, limits, &used);
    pos += used;

    auto keys = unpickle(d + pos, n - pos, &noStorages, &globals, limits, &used);
    pos += used;
    if (keys->kind != Value::Kind::List)
        fail("malformed legacy checkpoint (the storage list is " + keys->describe() + ")");
    if (!noStorages.empty())
        fail("malformed legacy checkpoint (storages in its storage list)");

    std::unordered_set<std::string> seen;
    for (const auto& k : keys->items) {
        if (k->kind != Value::Kind::String)
            fail("malformed legacy checkpoint (storage key " + k->describe() + ")");
        auto it = archive.storages.find(k->s);
        if (it == archive.storages.end())
            fail("legacy checkpoint lists storage '" + k->s + "' that its pickle does not use");
        if (!seen.insert(k->s).second)
            fail("legacy checkpoint lists storage '" + k->s + "' twice");
        Storage& st = it->second;
        if (n - pos < 8)
            fail("the legacy checkpoint is truncated (storage '" + k->s + "' is missing)");
        const int64_t count = static_cast<int64_t>(rd64(d + pos));
        pos += 8;
        if (count != st.numel)
            fail("storage '" + k->s + "' holds " + std::to_string(count) + " elements, expected " +
                 std::to_string(st.numel));
        const uint64_t bytes = static_cast<uint64_t>(count) * dtypeSize(st.dtype);
        if (bytes > n - pos)
            fail("the legacy checkpoint is truncated (storage '" + k->s + "' needs " + std::to_string(bytes) +
                 " bytes, " + std::to_string(n - pos) + " are left)");
        st.bytes.assign(d + pos, d + pos + bytes);
        pos += static_cast<std::size_t>(bytes);
    }
    for (const auto& [key, st] : archive.storages)
        if (!seen.count(key))
            fail("storage '" + key + "' used by the legacy checkpoint has no data in the file");
    return archive;
}

}  // namespace

}  // namespace fec::pickle::detail

namespace fec::pickle {

using namespace detail;

Archive readTorchFile(const std::vector<uint8_t>& data, const Limits& limits)
{
    const uint8_t* d = data.data();
    const std::size_t n = data.size();
    if (n > limits.maxFileBytes)
        fail("the file is larger than the limit of " + std::to_string(limits.maxFileBytes) + " bytes");
    if (n == 0)
        fail("not a PyTorch checkpoint (the file is empty)");

    // Told apart as torch.load does: a file read one way here and another way there could hide
    // what PyTorch runs. A zip starts with a local file header; anything else is a legacy file,
    // which PyTorch first tries to open as a tar archive.
    static const uint8_t zipStart[4] = {'P', 'K', 3, 4};
    if (std::memcmp(d, zipStart, std::min<std::size_t>(n, 4)) == 0) {
        const std::size_t eocd = findEocd(d, n);
        if (eocd == std::string::npos)
            fail("the zip archive is truncated or damaged (no end of central directory record)");
        return readZipCheckpoint(d, n, eocd, limits);
    }
    if ((n >= 262 && std::memcmp(d + 257, "ustar", 5) == 0) || isTarHeader(d, n))
        fail("legacy tar checkpoints (PyTorch < 0.4) are not supported");

    // Legacy format: the first pickle is the magic number.
    bool legacy = false;
    std::size_t used = 0;
    std::vector<std::string> magicGlobals;
    if (d[0] == 0x80) {
        try {
            std::map<std::string, Storage> noStorages;
            Limits small = limits;
            small.maxPickleOps = std::min<uint64_t>(small.maxPickleOps, 64);
            legacy = isLegacyMagic(*unpickle(d, n, &noStorages, &magicGlobals, small, &used));
        } catch (const FormatError&) {
            legacy = false;
        }
    }
    if (!legacy) {
        // PyTorch's own spelling of the magic pickle, cut short.
        static const uint8_t magicPickle[15] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                                0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
        if (n < sizeof magicPickle && std::memcmp(d, magicPickle, n) == 0)
            fail("the legacy checkpoint is truncated (it ends inside its header)");
        if (!magicGlobals.empty())
            fail("not a PyTorch checkpoint: its first pickle names " + magicGlobals.front() +
                 ", which torch.load would run before finding no legacy header (nothing was executed)");
        if (findEocd(d, n) != std::string::npos)
            fail("not a PyTorch checkpoint (it holds a zip directory but does not start with a zip entry, so "
                 "torch.load would not read it as a zip archive)");
        fail("not a PyTorch checkpoint (no zip directory and no legacy pickle header)");
    }
    return readLegacyCheckpoint(d, n, used, std::move(magicGlobals), limits);
}

Archive readTorchFile(const std::string& path, const Limits& limits)
{
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > limits.maxFileBytes)
        fail("the file is larger than the limit of " + std::to_string(limits.maxFileBytes) + " bytes");
    return readTorchFile(readFileBytes(path, limits.maxFileBytes), limits);
}

}  // namespace fec::pickle
