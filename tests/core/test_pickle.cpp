#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "fec/atomic_file.h"
#include "fec/pickle.h"
#include "cpu_time.h"

namespace {

using namespace fec::pickle;
using Bytes = std::vector<uint8_t>;
using Kind = Value::Kind;

std::string referenceDir()
{
    if (const char* env = std::getenv("FEC_REFERENCE_DIR"))
        return env;
    return FEC_REFERENCE_DIR_DEFAULT;  // tests/fixtures/reference in the repository
}

Bytes readFixture(const std::string& name)
{
    const std::string path = referenceDir() + "/" + name;
    if (!std::filesystem::exists(path))
        throw std::runtime_error("fixture " + path + " not found (set FEC_REFERENCE_DIR)");
    return fec::readFileBytes(path);
}

Archive readFixtureArchive(const std::string& name)
{
    return readTorchFile(referenceDir() + "/" + name);
}

uint32_t testCrc32(const uint8_t* p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

void le(Bytes& out, uint64_t v, int n)
{
    for (int i = 0; i < n; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

struct TestEntry {
    std::string name;
    std::string data;
    uint16_t method = 0;
};

// Appends the local header and data of `e` to `out`; returns its offset.
uint64_t addLocalEntry(Bytes& out, const TestEntry& e)
{
    const uint64_t offset = out.size();
    const uint32_t crc = testCrc32(reinterpret_cast<const uint8_t*>(e.data.data()), e.data.size());
    le(out, 0x04034b50, 4);
    le(out, 20, 2);
    le(out, 0, 2);
    le(out, e.method, 2);
    le(out, 0, 4);
    le(out, crc, 4);
    le(out, e.data.size(), 4);
    le(out, e.data.size(), 4);
    le(out, e.name.size(), 2);
    le(out, 0, 2);
    out.insert(out.end(), e.name.begin(), e.name.end());
    out.insert(out.end(), e.data.begin(), e.data.end());
    return offset;
}

// Appends a central directory of `entries` (whose local headers are at `offsets`) and an end of
// central directory record that says `commentLength` bytes of comment follow it.
void addDirectory(Bytes& out, const std::vector<TestEntry>& entries, const std::vector<uint64_t>& offsets,
                  uint16_t commentLength = 0)
{
    const uint64_t cd = out.size();
    for (size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        const uint32_t crc = testCrc32(reinterpret_cast<const uint8_t*>(e.data.data()), e.data.size());
        le(out, 0x02014b50, 4);
        le(out, 20, 2);
        le(out, 20, 2);
        le(out, 0, 2);
        le(out, e.method, 2);
        le(out, 0, 4);
        le(out, crc, 4);
        le(out, e.data.size(), 4);
        le(out, e.data.size(), 4);
        le(out, e.name.size(), 2);
        le(out, 0, 2);
        le(out, 0, 2);
        le(out, 0, 2);
        le(out, 0, 2);
        le(out, 0, 4);
        le(out, offsets[i], 4);
        out.insert(out.end(), e.name.begin(), e.name.end());
    }
    const uint64_t cdSize = out.size() - cd;
    le(out, 0x06054b50, 4);
    le(out, 0, 2);
    le(out, 0, 2);
    le(out, entries.size(), 2);
    le(out, entries.size(), 2);
    le(out, cdSize, 4);
    le(out, cd, 4);
    le(out, commentLength, 2);
}

// A minimal, independent zip writer (no data alignment, no zip64).
Bytes makeZip(const std::vector<TestEntry>& entries)
{
    Bytes out;
    std::vector<uint64_t> offsets;
    for (const auto& e : entries)
        offsets.push_back(addLocalEntry(out, e));
    addDirectory(out, entries, offsets);
    return out;
}

struct ParsedEntry {
    std::string name;
    uint64_t localOffset, dataOffset, size;
    uint32_t crc;
    uint16_t method;
};

uint64_t rdle(const Bytes& b, size_t at, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v |= static_cast<uint64_t>(b.at(at + i)) << (8 * i);
    return v;
}

// Independent reader of the (non-zip64) central directory, for layout checks.
std::vector<ParsedEntry> parseZip(const Bytes& z)
{
    size_t eocd = z.size() - 22;
    while (rdle(z, eocd, 4) != 0x06054b50)
        --eocd;
    const uint64_t count = rdle(z, eocd + 10, 2);
    size_t p = rdle(z, eocd + 16, 4);
    std::vector<ParsedEntry> out;
    for (uint64_t i = 0; i < count; ++i) {
        EXPECT_EQ(rdle(z, p, 4), 0x02014b50u);
        ParsedEntry e;
        e.method = static_cast<uint16_t>(rdle(z, p + 10, 2));
        e.crc = static_cast<uint32_t>(rdle(z, p + 16, 4));
        e.size = rdle(z, p + 24, 4);
        const size_t n = rdle(z, p + 28, 2), x = rdle(z, p + 30, 2), c = rdle(z, p + 32, 2);
        e.localOffset = rdle(z, p + 42, 4);
        e.name.assign(reinterpret_cast<const char*>(&z[p + 46]), n);
        e.dataOffset = e.localOffset + 30 + rdle(z, e.localOffset + 26, 2) + rdle(z, e.localOffset + 28, 2);
        out.push_back(e);
        p += 46 + n + x + c;
    }
    return out;
}

// Pickle opcode helpers.
std::string binunicode(const std::string& s)
{
    std::string out = "X";
    for (int i = 0; i < 4; ++i)
        out += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    return out + s;
}

std::string global(const std::string& module, const std::string& name)
{
    return "c" + module + "\n" + name + "\n";
}

std::string binint1(int v)
{
    return std::string("K") + static_cast<char>(v);
}

const std::string kProto2 = "\x80\x02";

// `_rebuild_tensor_v2(("storage", <type>, key, "cpu", numel), 0, (size,), (1,), False, {})`.
std::string tensorPickle(const std::string& storageType, const std::string& key, int numel, int size)
{
    return global("torch._utils", "_rebuild_tensor_v2") + "((" + binunicode("storage") + global("torch", storageType) +
           binunicode(key) + binunicode("cpu") + binint1(numel) + "tQ" + binint1(0) + binint1(size) + "\x85" +
           binint1(1) + "\x85" + "\x89" + "}" + "tR";
}

ValuePtr unpickleString(const std::string& pkl, std::map<std::string, Storage>* storages = nullptr,
                        std::vector<std::string>* ignored = nullptr, const Limits& limits = {})
{
    return unpickle(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size(), storages, ignored, limits);
}

Archive readBytes(const Bytes& b, const Limits& limits = {})
{
    return readTorchFile(b, limits);
}

// Every outcome other than success or FormatError fails the test.
void expectLoadsOrFormatError(const Bytes& b, const std::string& what)
{
    try {
        readBytes(b);
    } catch (const FormatError&) {
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": unexpected exception type: " << e.what();
    }
}

std::string formatErrorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const FormatError& e) {
        return e.what();
    }
    return "(no error)";
}

// Elements of a tensor in C order, as raw bytes.
Bytes tensorBytes(const TensorRef& t, const Storage& s)
{
    const size_t es = dtypeSize(t.dtype);
    int64_t n = 1;
    for (int64_t d : t.sizes)
        n *= d;
    Bytes out;
    std::vector<int64_t> idx(t.sizes.size(), 0);
    for (int64_t k = 0; k < n; ++k) {
        int64_t off = t.offset;
        for (size_t d = 0; d < idx.size(); ++d)
            off += idx[d] * t.strides[d];
        out.insert(out.end(), s.bytes.begin() + off * es, s.bytes.begin() + (off + 1) * es);
        for (size_t d = idx.size(); d-- > 0;) {
            if (++idx[d] < t.sizes[d])
                break;
            idx[d] = 0;
        }
    }
    return out;
}

void expectSameValue(const Value& a, const Archive& A, const Value& b, const Archive& B, const std::string& path)
{
    ASSERT_EQ(a.kind, b.kind) << path;
    switch (a.kind) {
    case Kind::None:
        break;
    case Kind::Bool:
        EXPECT_EQ(a.b, b.b) << path;
        break;
    case Kind::Int:
        EXPECT_EQ(a.i, b.i) << path;
        break;
    case Kind::Float:
        EXPECT_EQ(std::memcmp(&a.f, &b.f, sizeof(double)), 0) << path;
        break;
    case Kind::String:
    case Kind::Bytes:
        EXPECT_EQ(a.s, b.s) << path;
        break;
    case Kind::List:
    case Kind::Tuple:
        ASSERT_EQ(a.items.size(), b.items.size()) << path;
        for (size_t i = 0; i < a.items.size(); ++i)
            expectSameValue(*a.items[i], A, *b.items[i], B, path + "[" + std::to_string(i) + "]");
        break;
    case Kind::Dict:
        EXPECT_EQ(a.ordered, b.ordered) << path;
        ASSERT_EQ(a.dict.size(), b.dict.size()) << path;
        for (size_t i = 0; i < a.dict.size(); ++i) {
            expectSameValue(*a.dict[i].first, A, *b.dict[i].first, B, path + ".key" + std::to_string(i));
            expectSameValue(*a.dict[i].second, A, *b.dict[i].second, B, path + "." + a.dict[i].first->describe());
        }
        break;
    case Kind::Tensor:
        EXPECT_EQ(a.tensor.dtype, b.tensor.dtype) << path;
        EXPECT_EQ(a.tensor.sizes, b.tensor.sizes) << path;
        EXPECT_EQ(a.tensor.strides, b.tensor.strides) << path;
        EXPECT_EQ(a.tensor.offset, b.tensor.offset) << path;
        EXPECT_EQ(a.tensor.requiresGrad, b.tensor.requiresGrad) << path;
        EXPECT_EQ(tensorBytes(a.tensor, A.storages.at(a.tensor.storageKey)),
                  tensorBytes(b.tensor, B.storages.at(b.tensor.storageKey)))
            << path;
        break;
    case Kind::Global:
    case Kind::Object:
        EXPECT_EQ(a.module, b.module) << path;
        EXPECT_EQ(a.name, b.name) << path;
        break;
    }
}

struct ManifestKey {
    std::string name;
    std::vector<int64_t> shape;
};

// The state_dict keys of one checkpoint from manifest.json (a tiny scanner, no JSON library).
std::vector<ManifestKey> manifestKeys(const std::string& file)
{
    const Bytes raw = readFixture("manifest.json");
    std::string text;
    bool inString = false;
    for (char c : raw) {
        if (c == '"')
            inString = !inString;
        if (inString || !std::isspace(static_cast<unsigned char>(c)))
            text += c;
    }
    size_t p = text.find("\"file\":\"" + file + "\"");
    const std::string start = "\"keys_with_shapes\":[";
    p = text.find(start, p);
    if (p == std::string::npos)
        throw std::runtime_error("manifest has no keys for " + file);
    p += start.size();
    std::vector<ManifestKey> keys;
    while (text.compare(p, 2, "[\"") == 0) {
        ManifestKey k;
        const size_t q = text.find('"', p + 2);
        k.name = text.substr(p + 2, q - p - 2);
        p = q + 3;  // past `",[`
        while (text[p] != ']') {
            size_t used = 0;
            k.shape.push_back(std::stoll(text.substr(p, 24), &used));
            p += used;
            if (text[p] == ',')
                ++p;
        }
        p += 2;  // past `]]`
        keys.push_back(k);
        if (text[p] == ',')
            ++p;
    }
    return keys;
}

int64_t numelOf(const std::vector<int64_t>& shape)
{
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    return n;
}

TEST(PickleFixtures, FecSmallTrainingCheckpoint)
{
    const Archive a = readFixtureArchive("fec_small_seed0.pth.tar");
    EXPECT_EQ(a.format, ContainerFormat::Zip);
    EXPECT_EQ(a.zipRoot, "fec_small_seed0.pth");
    ASSERT_EQ(a.root->kind, Kind::Dict);
    EXPECT_FALSE(a.root->ordered);
    EXPECT_TRUE(a.root->isStringKeyedDict());
    EXPECT_EQ(a.root->describe(), "dict (7 entries)");

    std::vector<std::string> keys;
    for (const auto& [k, v] : a.root->dict)
        keys.push_back(k->s);
    EXPECT_EQ(keys,
              (std::vector<std::string>{"epoch", "arch", "state_dict", "version", "args", "state_dict_ema", "metric"}));
    EXPECT_EQ(a.root->get("epoch")->describe(), "int 299");
    EXPECT_EQ(a.root->get("arch")->describe(), "str \"fec_small\"");
    EXPECT_EQ(a.root->get("version")->i, 2);
    EXPECT_EQ(a.root->get("metric")->kind, Kind::Float);
    EXPECT_DOUBLE_EQ(a.root->get("metric")->f, 72.7);
    EXPECT_EQ(a.root->get("metric")->describe(), "float 72.7");
    EXPECT_EQ(a.root->get("nothing"), nullptr);

    const auto args = a.root->get("args");
    ASSERT_EQ(args->kind, Kind::Object);
    EXPECT_EQ(args->module, "argparse");
    EXPECT_EQ(args->name, "Namespace");
    EXPECT_EQ(args->describe(), "argparse.Namespace");
    ASSERT_TRUE(args->state);
    ASSERT_EQ(args->state->dict.size(), 38u);
    EXPECT_EQ(args->state->get("model")->s, "fec_small");
    EXPECT_DOUBLE_EQ(args->state->get("lr")->f, 0.001);
    EXPECT_EQ(args->state->get("batch_size")->i, 256);
    EXPECT_EQ(args->state->get("opt_betas")->kind, Kind::None);
    EXPECT_EQ(args->state->get("amp")->kind, Kind::Bool);
    EXPECT_TRUE(args->state->get("amp")->b);
    const auto scale = args->state->get("scale");
    ASSERT_EQ(scale->kind, Kind::List);
    ASSERT_EQ(scale->items.size(), 2u);
    EXPECT_DOUBLE_EQ(scale->items[0]->f, 0.08);
    EXPECT_DOUBLE_EQ(scale->items[1]->f, 1.0);
    EXPECT_EQ(a.ignoredGlobals, std::vector<std::string>{"argparse.Namespace"});

    const auto sd = a.root->get("state_dict");
    const auto ema = a.root->get("state_dict_ema");
    ASSERT_EQ(sd->kind, Kind::Dict);
    EXPECT_TRUE(sd->ordered);
    EXPECT_EQ(sd->describe(), "OrderedDict (282 entries)");
    EXPECT_EQ(ema->dict.size(), 282u);
    EXPECT_EQ(a.storages.size(), 484u);

    const auto expected = manifestKeys("fec_small_seed0.pth.tar");
    ASSERT_EQ(expected.size(), 282u);
    int64_t total = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
        const auto& [k, v] = sd->dict[i];
        EXPECT_EQ(k->s, expected[i].name);
        ASSERT_EQ(v->kind, Kind::Tensor) << k->s;
        EXPECT_EQ(v->tensor.sizes, expected[i].shape) << k->s;
        EXPECT_EQ(v->tensor.dtype, DType::Float32);
        EXPECT_EQ(v->tensor.location, "cpu");
        EXPECT_FALSE(v->tensor.requiresGrad);
        const Storage& st = a.storages.at(v->tensor.storageKey);
        EXPECT_EQ(st.bytes.size(), static_cast<size_t>(st.numel) * 4);
        total += numelOf(v->tensor.sizes);
    }
    EXPECT_EQ(total, 5727528);

    const auto skip = sd->get("network.3.conv_skip.weight");
    ASSERT_TRUE(skip);
    EXPECT_EQ(skip->tensor.sizes, (std::vector<int64_t>{196, 64, 3, 3}));
    EXPECT_EQ(skip->tensor.strides, (std::vector<int64_t>{576, 9, 3, 1}));
    EXPECT_EQ(sd->get("patch_embed.proj.weight")->describe(), "tensor float32 [32, 5, 4, 4]");

    // Conv / fc weights are the same storage in both dictionaries; 1-D tensors differ.
    EXPECT_EQ(skip->tensor.storageKey, ema->get("network.3.conv_skip.weight")->tensor.storageKey);
    EXPECT_NE(sd->get("norm.weight")->tensor.storageKey, ema->get("norm.weight")->tensor.storageKey);
    int shared = 0;
    for (size_t i = 0; i < sd->dict.size(); ++i) {
        EXPECT_EQ(sd->dict[i].first->s, ema->dict[i].first->s);
        shared += sd->dict[i].second->tensor.storageKey == ema->dict[i].second->tensor.storageKey;
    }
    EXPECT_EQ(shared, 80);
}

TEST(PickleFixtures, TinyZipAndLegacyHoldTheSameTensors)
{
    const Archive zip = readFixtureArchive("tiny_seed0.pth.tar");
    const Archive legacy = readFixtureArchive("tiny_seed0_legacy.pth");
    EXPECT_EQ(zip.format, ContainerFormat::Zip);
    EXPECT_EQ(zip.zipRoot, "tiny_seed0.pth");
    EXPECT_EQ(legacy.format, ContainerFormat::Legacy);
    EXPECT_TRUE(zip.ignoredGlobals.empty());
    EXPECT_TRUE(legacy.ignoredGlobals.empty());
    ASSERT_EQ(zip.root->kind, Kind::Dict);
    ASSERT_EQ(legacy.root->kind, Kind::Dict);
    EXPECT_TRUE(zip.root->ordered);
    EXPECT_TRUE(legacy.root->ordered);
    ASSERT_EQ(zip.root->dict.size(), 102u);
    ASSERT_EQ(legacy.root->dict.size(), 102u);
    EXPECT_EQ(zip.storages.size(), 102u);
    EXPECT_EQ(legacy.storages.size(), 102u);

    const auto expected = manifestKeys("tiny_seed0.pth.tar");
    ASSERT_EQ(expected.size(), 102u);
    for (size_t i = 0; i < 102; ++i) {
        const auto& [zk, zv] = zip.root->dict[i];
        const auto& [lk, lv] = legacy.root->dict[i];
        ASSERT_EQ(zk->s, expected[i].name);
        ASSERT_EQ(lk->s, expected[i].name);
        EXPECT_EQ(zv->tensor.sizes, expected[i].shape);
        EXPECT_EQ(lv->tensor.sizes, expected[i].shape);
        EXPECT_EQ(zv->tensor.strides, lv->tensor.strides);
        // Legacy keys are object ids, not "0".."101".
        EXPECT_NE(zv->tensor.storageKey, lv->tensor.storageKey);
        const Bytes zb = tensorBytes(zv->tensor, zip.storages.at(zv->tensor.storageKey));
        const Bytes lb = tensorBytes(lv->tensor, legacy.storages.at(lv->tensor.storageKey));
        EXPECT_EQ(zb.size(), static_cast<size_t>(numelOf(expected[i].shape)) * 4);
        EXPECT_EQ(zb, lb) << zk->s;
    }

    // The README's negated alpha, read as a float.
    const auto alpha = zip.root->get("network.4.0.token_mixer.sim_alpha");
    ASSERT_TRUE(alpha);
    const Bytes ab = tensorBytes(alpha->tensor, zip.storages.at(alpha->tensor.storageKey));
    float value = 0;
    ASSERT_EQ(ab.size(), sizeof value);
    std::memcpy(&value, ab.data(), sizeof value);
    EXPECT_NEAR(value, -2.3921, 1e-4);
}

TEST(PickleFixtures, ReadsFromMemoryLikeFromDisk)
{
    const Archive fromDisk = readFixtureArchive("tiny_seed0.pth.tar");
    const Archive fromMemory = readBytes(readFixture("tiny_seed0.pth.tar"));
    expectSameValue(*fromDisk.root, fromDisk, *fromMemory.root, fromMemory, "root");
}

void expectRoundTrip(const Archive& a, const std::string& what)
{
    const Bytes written = writeTorchZip(*a.root, a.storages, "roundtrip");
    const Archive b = readBytes(written);
    EXPECT_EQ(b.format, ContainerFormat::Zip);
    EXPECT_EQ(b.zipRoot, "roundtrip");
    EXPECT_TRUE(b.ignoredGlobals.empty());
    expectSameValue(*a.root, a, *b.root, b, what);
    EXPECT_EQ(a.storages.size(), b.storages.size()) << what;
    for (const auto& [key, st] : a.storages) {
        ASSERT_TRUE(b.storages.count(key)) << what << " storage " << key;
        EXPECT_EQ(st.dtype, b.storages.at(key).dtype);
        EXPECT_EQ(st.numel, b.storages.at(key).numel);
        EXPECT_EQ(st.bytes, b.storages.at(key).bytes) << what << " storage " << key;
    }
    // Writing is deterministic.
    EXPECT_EQ(writeTorchZip(*b.root, b.storages, "roundtrip"), written) << what;
}

TEST(PickleWriter, RoundTripsTheFixturesBitIdentically)
{
    expectRoundTrip(readFixtureArchive("tiny_seed0.pth.tar"), "tiny zip");
    expectRoundTrip(readFixtureArchive("tiny_seed0_legacy.pth"), "tiny legacy");

    Archive big = readFixtureArchive("fec_small_seed0.pth.tar");
    // argparse.Namespace is an opaque object: the writer refuses it, its fields as a dict are fine.
    EXPECT_THROW(writeTorchZip(*big.root, big.storages), std::invalid_argument);
    big.root->set("args", big.root->get("args")->state);
    big.ignoredGlobals.clear();
    expectRoundTrip(big, "fec_small");
}

TEST(PickleWriter, ZipLayoutMatchesPyTorch)
{
    const Archive a = readFixtureArchive("tiny_seed0.pth.tar");
    const Bytes z = writeTorchZip(*a.root, a.storages, "my_model");
    const auto entries = parseZip(z);
    ASSERT_EQ(entries.size(), 102u + 3);
    EXPECT_EQ(entries.front().name, "my_model/data.pkl");
    EXPECT_EQ(entries[1].name, "my_model/byteorder");
    EXPECT_EQ(entries.back().name, "my_model/version");
    std::set<std::string> names;
    for (const auto& e : entries) {
        names.insert(e.name);
        EXPECT_EQ(e.method, 0);
        EXPECT_EQ(e.dataOffset % 64, 0u) << e.name;
        EXPECT_EQ(e.crc, testCrc32(&z[e.dataOffset], e.size)) << e.name;
        EXPECT_EQ(rdle(z, e.localOffset, 4), 0x04034b50u);
    }
    for (int k = 0; k < 102; ++k)
        EXPECT_TRUE(names.count("my_model/data/" + std::to_string(k))) << k;
    const auto& version = entries.back();
    EXPECT_EQ(std::string(z.begin() + version.dataOffset, z.begin() + version.dataOffset + version.size), "3\n");
    const auto& order = entries[1];
    EXPECT_EQ(std::string(z.begin() + order.dataOffset, z.begin() + order.dataOffset + order.size), "little");

    // The pickle is protocol 2 and uses the globals torch.load's weights_only mode accepts.
    const auto& pkl = entries.front();
    const std::string text(z.begin() + pkl.dataOffset, z.begin() + pkl.dataOffset + pkl.size);
    EXPECT_EQ(text.substr(0, 2), kProto2);
    EXPECT_NE(text.find("ccollections\nOrderedDict\n"), std::string::npos);
    EXPECT_NE(text.find("ctorch._utils\n_rebuild_tensor_v2\n"), std::string::npos);
    EXPECT_NE(text.find("ctorch\nFloatStorage\n"), std::string::npos);
    EXPECT_EQ(text.back(), '.');
}

TEST(PickleWriter, OnlyReferencedStoragesAreWritten)
{
    std::map<std::string, Storage> storages;
    for (const char* key : {"a", "b"}) {
        Storage st;
        st.dtype = DType::Int64;
        st.numel = 2;
        st.bytes.assign(16, static_cast<uint8_t>(key[0]));
        storages[key] = st;
    }
    TensorRef t;
    t.storageKey = "b";
    t.dtype = DType::Int64;
    t.storageNumel = 2;
    t.offset = 1;
    t.sizes = {1};
    t.strides = {1};
    auto root = Value::dictionary(true);
    root->set("t", Value::tensorRef(t));
    const Archive back = readBytes(writeTorchZip(*root, storages));
    EXPECT_EQ(back.zipRoot, "archive");
    ASSERT_EQ(back.storages.size(), 1u);
    EXPECT_EQ(back.storages.at("b").bytes, storages["b"].bytes);
    EXPECT_EQ(back.root->get("t")->tensor.offset, 1);
    EXPECT_EQ(back.root->get("t")->tensor.dtype, DType::Int64);
}

TEST(PickleWriter, ScalarsAndContainersRoundTrip)
{
    auto root = Value::dictionary();
    std::vector<int64_t> ints = {0, 1, 255, 256, 65535, 65536, -1, -256, 1LL << 40, -(1LL << 40)};
    ints.insert(ints.end(), {2147483647LL, -2147483648LL, 2147483648LL, -2147483649LL});
    ints.insert(ints.end(), {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()});
    auto intList = Value::list();
    for (int64_t v : ints)
        intList->items.push_back(Value::integer(v));
    root->set("ints", intList);
    auto floats = Value::tuple();
    for (double v : {0.0, -0.0, 1.5, -2.25e-300, 1e308, std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()})
        floats->items.push_back(Value::real(v));
    root->set("floats", floats);
    root->set("text", Value::string("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
    root->set("empty", Value::string(""));
    root->set("yes", Value::boolean(true));
    root->set("no", Value::boolean(false));
    root->set("none", Value::none());
    auto bytes = std::make_shared<Value>();
    bytes->kind = Kind::Bytes;
    bytes->s = std::string("\x00\x01\x7f\x80\xff", 5);
    root->set("bytes", bytes);
    for (int n = 0; n <= 5; ++n) {
        std::vector<ValuePtr> items;
        for (int k = 0; k < n; ++k)
            items.push_back(Value::integer(k));
        root->set("tuple" + std::to_string(n), Value::tuple(items));
        root->set("list" + std::to_string(n), Value::list(items));
    }
    auto big = Value::list();
    auto bigDict = Value::dictionary(true);
    for (int k = 0; k < 2500; ++k) {
        big->items.push_back(Value::integer(k));
        bigDict->set("k" + std::to_string(k), Value::integer(-k));
    }
    root->set("big", big);
    root->set("bigDict", bigDict);
    auto intKeys = Value::dictionary();
    intKeys->dict.emplace_back(Value::integer(3), Value::string("three"));
    intKeys->dict.emplace_back(Value::tuple({Value::integer(1), Value::string("x")}), Value::none());
    root->set("intKeys", intKeys);
    root->set("nested", Value::list({Value::list({Value::dictionary(true), Value::tuple()})}));

    Archive a;
    a.root = root;
    const Archive b = readBytes(writeTorchZip(*root, {}));
    expectSameValue(*a.root, a, *b.root, b, "root");
    EXPECT_TRUE(b.storages.empty());
}

TEST(PickleWriter, Zip64RecordsAreReadBack)
{
    const Archive a = readFixtureArchive("tiny_seed0.pth.tar");
    ZipWriteOptions options;
    options.forceZip64 = true;
    const Bytes z = writeTorchZip(*a.root, a.storages, "z64", options);
    // The locator and the zip64 end record are there, the classic record is saturated.
    EXPECT_EQ(rdle(z, z.size() - 22 - 20, 4), 0x07064b50u);
    EXPECT_EQ(rdle(z, z.size() - 22 + 10, 2), 0xffffu);
    const Archive b = readBytes(z);
    expectSameValue(*a.root, a, *b.root, b, "root");
}

TEST(PickleWriter, RefusesWhatTorchCannotLoad)
{
    std::map<std::string, Storage> storages;
    Storage st;
    st.numel = 4;
    st.bytes.resize(16);
    storages["0"] = st;
    TensorRef t;
    t.storageKey = "0";
    t.sizes = {5};
    t.strides = {1};
    auto tooBig = Value::dictionary();
    tooBig->set("t", Value::tensorRef(t));
    EXPECT_THROW(writeTorchZip(*tooBig, storages), std::invalid_argument);
    t.sizes = {4};
    t.storageKey = "missing";
    auto missing = Value::dictionary();
    missing->set("t", Value::tensorRef(t));
    EXPECT_THROW(writeTorchZip(*missing, storages), std::invalid_argument);
    t.storageKey = "0";
    t.dtype = DType::Int32;
    auto wrongType = Value::dictionary();
    wrongType->set("t", Value::tensorRef(t));
    EXPECT_THROW(writeTorchZip(*wrongType, storages), std::invalid_argument);
    EXPECT_THROW(writeTorchZip(*Value::string("\xff"), {}), std::invalid_argument);
    EXPECT_THROW(writeTorchZip(*Value::none(), {}, "a/b"), std::invalid_argument);
    auto cyclic = Value::list();
    cyclic->items.push_back(cyclic);
    EXPECT_THROW(writeTorchZip(*cyclic, {}), std::invalid_argument);
    cyclic->items.clear();
}

TEST(PickleUnpickler, DescribesValues)
{
    EXPECT_EQ(Value::integer(299)->describe(), "int 299");
    EXPECT_EQ(Value::string("fec_small")->describe(), "str \"fec_small\"");
    EXPECT_EQ(Value::real(300)->describe(), "float 300.0");
    EXPECT_EQ(Value::real(72.7)->describe(), "float 72.7");
    EXPECT_EQ(Value::real(0.001)->describe(), "float 0.001");
    EXPECT_EQ(Value::real(1e-06)->describe(), "float 1e-06");
    EXPECT_EQ(Value::real(1e16)->describe(), "float 1e+16");
    EXPECT_EQ(Value::real(-0.0)->describe(), "float -0.0");
    EXPECT_EQ(Value::real(4.0 / 3.0)->describe(), "float 1.3333333333333333");
    EXPECT_EQ(Value::real(1.5e300)->describe(), "float 1.5e+300");
    EXPECT_EQ(Value::none()->describe(), "None");
    EXPECT_EQ(Value::list({Value::none()})->describe(), "list (1 item)");
    EXPECT_EQ(Value::dictionary(true)->describe(), "OrderedDict (0 entries)");
    // Long strings are cut at a character boundary, control characters escaped.
    EXPECT_EQ(Value::string(std::string(39, 'a') + "\xc3\xa9xyz")->describe(),
              "str \"" + std::string(39, 'a') + "...\"");
    EXPECT_EQ(Value::string("a\nb\"")->describe(), "str \"a\\x0ab\\\"\"");
}

TEST(PickleUnpickler, OlderProtocolsAndOpcodes)
{
    // Protocol 0: INT, LONG, FLOAT, STRING, UNICODE, PUT/GET, DICT, LIST, TUPLE, bools via INT.
    const std::string p0 = "(dp0\nS'a\\'b\\x41\\n'\np1\nI42\nsVk\\u00e9y\np2\nL12345678901234L\nsS'f'\nF1.5\n"
                           "sS'l'\n((I1\nI01\nI00\nltsS'again'\ng1\ns.";
    const auto v = unpickleString(p0);
    ASSERT_EQ(v->kind, Kind::Dict);
    EXPECT_EQ(v->get("a'bA\n")->i, 42);
    EXPECT_EQ(v->get("k\xc3\xa9y")->i, 12345678901234LL);
    EXPECT_DOUBLE_EQ(v->get("f")->f, 1.5);
    const auto l = v->get("l");
    ASSERT_EQ(l->kind, Kind::Tuple);
    ASSERT_EQ(l->items.size(), 1u);
    ASSERT_EQ(l->items[0]->items.size(), 3u);
    EXPECT_EQ(l->items[0]->items[1]->kind, Kind::Bool);
    EXPECT_TRUE(l->items[0]->items[1]->b);
    EXPECT_FALSE(l->items[0]->items[2]->b);
    EXPECT_EQ(v->get("again")->s, "a'bA\n");

    // Protocol 4/5: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_SET/ADDITEMS, FROZENSET,
    // BINBYTES8, NEWOBJ_EX, BYTEARRAY8.
    std::string p4 = "\x80\x04\x95";
    std::string body = std::string("(") + "\x8f\x94(K\x01K\x02\x90" + "(K\x03\x91" + "\x86\x94" + "\x8c\x01s\x94" +
                       "\x8e" + std::string("\x02\0\0\0\0\0\0\0", 8) + "ab" + "\x96" +
                       std::string("\x01\0\0\0\0\0\0\0", 8) + "c" + std::string("\x8c\x08") + "argparse" + "\x8c\x09" +
                       "Namespace" + "\x93)}\x92" + "t.";
    for (int i = 0; i < 8; ++i)
        p4 += static_cast<char>((body.size() >> (8 * i)) & 0xff);
    p4 += body;
    std::vector<std::string> ignored;
    const auto t = unpickleString(p4, nullptr, &ignored);
    ASSERT_EQ(t->kind, Kind::Tuple);
    ASSERT_EQ(t->items.size(), 5u);
    ASSERT_EQ(t->items[0]->kind, Kind::Tuple);
    EXPECT_EQ(t->items[0]->items[0]->items.size(), 2u);  // the set
    EXPECT_EQ(t->items[0]->items[1]->items.size(), 1u);  // the frozenset
    EXPECT_EQ(t->items[1]->s, "s");
    EXPECT_EQ(t->items[2]->kind, Kind::Bytes);
    EXPECT_EQ(t->items[2]->s, "ab");
    EXPECT_EQ(t->items[3]->s, "c");
    EXPECT_EQ(t->items[4]->kind, Kind::Object);
    EXPECT_EQ(ignored, std::vector<std::string>{"argparse.Namespace"});

    // Protocol 2 bytes (_codecs.encode), LONG1, big ints, sets via REDUCE, SETITEM replacing a key.
    const std::string p2 = kProto2 + "}(" + binunicode("b") + global("_codecs", "encode") + binunicode("\xc3\xbf\x01") +
                           binunicode("latin1") + "\x86R" + binunicode("n") + std::string("\x8a\x02\x00\x80", 4) +
                           binunicode("big") + "\x8a\x0a" + std::string("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19") +
                           binunicode("set") + global("builtins", "set") + "]K\x07" + "a\x85R" + binunicode("n") +
                           "J\xff\xff\xff\xff" + "u.";
    const auto d = unpickleString(p2);
    EXPECT_EQ(d->get("b")->s, std::string("\xff\x01"));
    EXPECT_EQ(d->get("n")->i, -1);
    EXPECT_EQ(d->dict.size(), 4u);
    EXPECT_EQ(d->get("big")->describe(), "int (80-bit)");
    EXPECT_EQ(d->get("set")->kind, Kind::List);
}

TEST(PickleUnpickler, ArbitraryGlobalsAreNeverCalled)
{
    const std::filesystem::path marker =
        std::filesystem::temp_directory_path() / ("fec_pickle_marker_" + std::to_string(::getpid()));
    std::filesystem::remove(marker);
    const std::string pkl = kProto2 + "}(" + binunicode("a") + global("os", "system") +
                            binunicode("touch " + marker.string()) + "\x85R" + binunicode("b") +
                            global("builtins", "eval") + binunicode("open('" + marker.string() + "','w')") + "\x85R" +
                            binunicode("c") + global("os", "system") + "u.";
    const Bytes zip = makeZip({{"archive/data.pkl", pkl}, {"archive/version", "3\n"}});
    const Archive a = readBytes(zip);
    EXPECT_FALSE(std::filesystem::exists(marker));
    const auto sys = a.root->get("a");
    ASSERT_EQ(sys->kind, Kind::Object);
    EXPECT_EQ(sys->module, "os");
    EXPECT_EQ(sys->name, "system");
    ASSERT_EQ(sys->items.size(), 1u);
    EXPECT_EQ(sys->items[0]->s, "touch " + marker.string());
    EXPECT_EQ(a.root->get("b")->kind, Kind::Object);
    EXPECT_EQ(a.root->get("c")->kind, Kind::Global);
    EXPECT_EQ(a.root->get("c")->describe(), "global os.system");
    EXPECT_EQ(a.ignoredGlobals, (std::vector<std::string>{"os.system", "builtins.eval"}));
}

TEST(PickleUnpickler, RejectsBadOpcodesAndCalls)
{
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "\xff."); }).find("0xff"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "(i__main__\nX\n."); }).find("INST"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "\x82\x01."); }).find("EXT1"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString("\x80\x06N."); }).find("protocol 6"), std::string::npos);
    // REDUCE on an int, NEWOBJ on a function, BUILD on a list.
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "K\x01)R."); }).find("int 1"), std::string::npos);
    EXPECT_NE(formatErrorOf([] {
                  unpickleString(kProto2 + global("torch._utils", "_rebuild_tensor_v2") + ")\x81.");
              }).find("NEWOBJ"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "]}b."); }).find("BUILD"), std::string::npos);
    // Stack underflow, missing mark, missing memo, unknown persistent id, no STOP.
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "a."); }).find("underflow"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "]e."); }).find("MARK"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "h\x05."); }).find("memo"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + binunicode("x") + "Q."); }).find("persistent id"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "N"); }).find("truncated"), std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + std::string("X\x05\0\0\0ab", 8)); }).find("truncated"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + std::string("X\x02\0\0\0\xff\xfe.", 8)); }).find("UTF-8"),
              std::string::npos);
    // Huge claimed lengths fail before any allocation.
    EXPECT_NE(formatErrorOf([] {
                  unpickleString(kProto2 + "\x8d" + std::string("\0\0\0\0\0\0\0\x40", 8) + ".");
              }).find("truncated"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + "\x8b\xff\xff\xff\x7f" + "."); }).find("truncated"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] {
                  unpickleString(kProto2 + "\x95" + std::string("\xff\xff\xff\xff\0\0\0\0", 8));
              }).find("truncated"),
              std::string::npos);
}

TEST(PickleUnpickler, TensorChecks)
{
    std::map<std::string, Storage> storages;
    const auto ok = unpickleString(kProto2 + tensorPickle("FloatStorage", "0", 4, 4) + ".", &storages);
    ASSERT_EQ(ok->kind, Kind::Tensor);
    EXPECT_EQ(ok->tensor.sizes, std::vector<int64_t>{4});
    EXPECT_EQ(storages.at("0").numel, 4);

    storages.clear();
    const std::string tooBig =
        formatErrorOf([&] { unpickleString(kProto2 + tensorPickle("FloatStorage", "0", 4, 5) + ".", &storages); });
    EXPECT_NE(tooBig.find("exceeds its storage"), std::string::npos) << tooBig;

    storages.clear();
    const std::string conflict = formatErrorOf([&] {
        unpickleString(kProto2 + "(" + tensorPickle("FloatStorage", "0", 4, 4) +
                           tensorPickle("LongStorage", "0", 4, 4) + "t.",
                       &storages);
    });
    EXPECT_NE(conflict.find("storage '0'"), std::string::npos) << conflict;

    storages.clear();
    EXPECT_NE(formatErrorOf([&] {
                  unpickleString(kProto2 + tensorPickle("ComplexFloatStorage", "0", 4, 4) + ".", &storages);
              }).find("unsupported storage type torch.ComplexFloatStorage"),
              std::string::npos);

    // Overflowing strides and too many dimensions.
    storages.clear();
    const std::string hugeStride = kProto2 + global("torch._utils", "_rebuild_tensor_v2") + "((" +
                                   binunicode("storage") + global("torch", "FloatStorage") + binunicode("0") +
                                   binunicode("cpu") + binint1(4) + "tQ" + binint1(0) + "K\x04K\x04\x86" + "\x8a\x08" +
                                   std::string("\0\0\0\0\0\0\0\x40", 8) + "K\x01\x86" + "\x89}tR.";
    EXPECT_NE(formatErrorOf([&] { unpickleString(hugeStride, &storages); }).find("exceeds"), std::string::npos);
    storages.clear();
    std::string manyDims = kProto2 + global("torch._utils", "_rebuild_tensor_v2") + "((" + binunicode("storage") +
                           global("torch", "FloatStorage") + binunicode("0") + binunicode("cpu") + binint1(4) + "tQ" +
                           binint1(0) + "(";
    for (int k = 0; k < 20; ++k)
        manyDims += binint1(1);
    manyDims += "t(";
    for (int k = 0; k < 20; ++k)
        manyDims += binint1(1);
    manyDims += "t\x89}tR.";
    EXPECT_NE(formatErrorOf([&] { unpickleString(manyDims, &storages); }).find("dimensions"), std::string::npos);
}

TEST(PickleUnpickler, MemoBombsAndDeepNestingEndQuickly)
{
    // Billion laughs: each list holds the previous one twice; 2^60 items once expanded.
    std::string bomb = kProto2 + std::string("]q\0K\x01", 5) + "a";
    for (int i = 1; i < 60; ++i)
        bomb += std::string("](h") + static_cast<char>(i - 1) + "h" + static_cast<char>(i - 1) + "eq" +
                static_cast<char>(i) + "0";
    bomb += std::string("h") + static_cast<char>(59) + ".";
    const std::string bombError = formatErrorOf([&] { unpickleString(bomb); });
    EXPECT_NE(bombError.find("expand"), std::string::npos) << bombError;

    // A flat list of many references to one memo entry, over a small item limit.
    std::string flat = kProto2 + std::string("]q\0]", 4);
    for (int i = 0; i < 2000; ++i)
        flat += std::string("h\0", 2);
    flat.insert(flat.size() - 4000, "(");
    flat += "e.";
    Limits small;
    small.maxContainerItems = 1000;
    EXPECT_NE(formatErrorOf([&] { unpickleString(flat, nullptr, nullptr, small); }).find("1000"), std::string::npos);
    EXPECT_NO_THROW(unpickleString(flat));

    // 100000 nested lists built through the memo: rejected, and torn down without recursion.
    std::string deep = kProto2 + "]r" + std::string(4, '\0');
    for (uint32_t i = 1; i < 100000; ++i) {
        deep += "]j";
        for (int k = 0; k < 4; ++k)
            deep += static_cast<char>(((i - 1) >> (8 * k)) & 0xff);
        deep += "ar";
        for (int k = 0; k < 4; ++k)
            deep += static_cast<char>((i >> (8 * k)) & 0xff);
        deep += "0";
    }
    std::string deepResult = deep + "j" + std::string("\x9f\x86\x01\x00", 4) + ".";
    EXPECT_NE(formatErrorOf([&] { unpickleString(deepResult); }).find("deeper"), std::string::npos);
    // The same chain left behind in the memo while the result is small.
    EXPECT_EQ(unpickleString(deep + "N.")->kind, Kind::None);

    // A list containing itself; MARKs nested too deep; the op limit.
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + std::string("]q\0h\0a.", 7)); }).find("itself"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([] { unpickleString(kProto2 + std::string(1000, '(') + "N."); }).find("deeper"),
              std::string::npos);
    Limits fewOps;
    fewOps.maxPickleOps = 100;
    EXPECT_NE(formatErrorOf([&] {
                  unpickleString(kProto2 + std::string(200, 'N') + ".", nullptr, nullptr, fewOps);
              }).find("operations"),
              std::string::npos);
    Limits littleMemory;
    littleMemory.maxPickleMemory = 1 << 20;
    std::string many = kProto2;
    for (int i = 0; i < 20000; ++i)
        many += "N0";
    EXPECT_NE(formatErrorOf([&] { unpickleString(many + "N.", nullptr, nullptr, littleMemory); }).find("memory"),
              std::string::npos);
    EXPECT_NO_THROW(unpickleString(many + "N."));
}

TEST(PickleHostile, EmptyAndRandomInput)
{
    EXPECT_NE(formatErrorOf([] { readBytes({}); }).find("empty"), std::string::npos);
    EXPECT_NE(formatErrorOf([] {
                  readBytes({'h', 'e', 'l', 'l', 'o'});
              }).find("not a PyTorch checkpoint"),
              std::string::npos);
    std::mt19937 rng(1234);
    for (int round = 0; round < 300; ++round) {
        Bytes b(rng() % 3000);
        for (auto& x : b)
            x = static_cast<uint8_t>(rng());
        if (round % 3 == 1 && b.size() >= 2) {
            b[0] = 0x80;
            b[1] = 0x02;
        }
        if (round % 3 == 2 && b.size() >= 4) {
            b[0] = 'P';
            b[1] = 'K';
            b[2] = 3;
            b[3] = 4;
        }
        EXPECT_THROW(readBytes(b), FormatError) << round;
        // The unpickler alone on random opcodes: a value or FormatError, nothing else.
        try {
            unpickle(b.data(), b.size(), nullptr, nullptr);
        } catch (const FormatError&) {
        }
    }
    Bytes tar(1024, 0);
    std::memcpy(&tar[257], "ustar", 5);
    EXPECT_NE(formatErrorOf([&] { readBytes(tar); }).find("tar"), std::string::npos);
}

TEST(PickleHostile, TruncatedFixtures)
{
    for (const char* name : {"tiny_seed0.pth.tar", "tiny_seed0_legacy.pth", "fec_small_seed0.pth.tar"}) {
        const Bytes full = readFixture(name);
        std::vector<size_t> cuts;
        const bool big = full.size() > 1000000;
        // Every few KB, densely over the pickles at the start and the zip directory at the end.
        for (size_t c = 0; c < full.size(); c += big ? 3000017 : 997)
            cuts.push_back(c);
        for (size_t c = 0; c < 20000 && c < full.size(); c += big ? 4001 : 23)
            cuts.push_back(c);
        for (size_t back = 1; back < 70000 && back < full.size(); back += big ? 9001 : 31)
            cuts.push_back(full.size() - back);
        for (size_t c : cuts) {
            const Bytes part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(c));
            const std::string error = formatErrorOf([&] { readBytes(part); });
            if (c == 0)
                EXPECT_NE(error.find("empty"), std::string::npos);
            else
                EXPECT_NE(error.find("truncated"), std::string::npos) << name << " cut at " << c << ": " << error;
        }
    }
}

TEST(PickleHostile, TruncatedDataPkl)
{
    const Bytes zip = readFixture("tiny_seed0.pth.tar");
    const size_t start = 30 + rdle(zip, 26, 2) + rdle(zip, 28, 2);
    const std::string marker = "PK\x03\x04";
    const size_t end = std::search(zip.begin() + start, zip.end(), marker.begin(), marker.end()) - zip.begin();
    size_t pickleSize = 0;
    EXPECT_EQ(unpickle(&zip[start], end - start, nullptr, nullptr, {}, &pickleSize)->dict.size(), 102u);
    ASSERT_GT(pickleSize, 10000u);
    for (size_t n = 0; n < pickleSize; n += n + 40 < pickleSize ? 7 : 1) {
        const Bytes part(zip.begin() + start, zip.begin() + start + n);
        const std::string error = formatErrorOf([&] { unpickle(part.data(), part.size(), nullptr, nullptr); });
        EXPECT_NE(error.find("truncated"), std::string::npos) << n << ": " << error;
    }
}

TEST(PickleHostile, MutatedFixturesNeverCrash)
{
    std::mt19937 rng(99);
    for (const char* name : {"tiny_seed0.pth.tar", "tiny_seed0_legacy.pth"}) {
        const Bytes full = readFixture(name);
        for (int round = 0; round < 250; ++round) {
            Bytes b = full;
            const int flips = 1 + static_cast<int>(rng() % 6);
            for (int k = 0; k < flips; ++k) {
                // Mostly in the pickle (start) and the zip directory (end), where structure lives.
                size_t at;
                switch (rng() % 3) {
                case 0:
                    at = rng() % std::min<size_t>(b.size(), 17000);
                    break;
                case 1:
                    at = b.size() - 1 - rng() % std::min<size_t>(b.size(), 12000);
                    break;
                default:
                    at = rng() % b.size();
                }
                b[at] = static_cast<uint8_t>(rng());
            }
            expectLoadsOrFormatError(b, std::string(name) + " round " + std::to_string(round));
        }
    }
}

TEST(PickleHostile, BadZipContainers)
{
    const std::string pkl = kProto2 + tensorPickle("FloatStorage", "0", 4, 4) + ".";
    const std::string data16(16, '\x01');
    // The baseline loads.
    const Archive a = readBytes(makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}, {"ck/version", "3\n"}}));
    EXPECT_EQ(a.zipRoot, "ck");
    EXPECT_EQ(a.storages.at("0").bytes, Bytes(16, 1));

    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", std::string(12, 'x')}}));
              }).find("storage '0' holds 12 bytes, expected 16"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([&] { readBytes(makeZip({{"ck/data.pkl", pkl}})); }).find("missing"), std::string::npos);
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", pkl, 8}, {"ck/data/0", data16}}));
              }).find("compressed zip entries are not supported (entry ck/data.pkl)"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([&] { readBytes(makeZip({{"ck/version", "3\n"}})); }).find("data.pkl"), std::string::npos);
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", pkl}, {"other/data/0", data16}}));
              }).find("top folder"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}, {"ck/data/0", data16}}));
              }).find("duplicate"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}, {"ck/byteorder", "big"}}));
              }).find("big-endian"),
              std::string::npos);
    EXPECT_NO_THROW(readBytes(makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}, {"ck/byteorder", "little"}})));
    const std::string tooBig = kProto2 + tensorPickle("FloatStorage", "0", 4, 5) + ".";
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", tooBig}, {"ck/data/0", data16}}));
              }).find("exceeds its storage '0' of 4 elements"),
              std::string::npos);
    EXPECT_NE(formatErrorOf([&] {
                  readBytes(makeZip({{"ck/data.pkl", "\xfegarbage"}}));
              }).find("opcode"),
              std::string::npos);

    // Corrupted storage bytes are caught by the CRC.
    Bytes corrupt = makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}});
    const auto entries = parseZip(corrupt);
    corrupt[entries[1].dataOffset + 3] ^= 0x40;
    EXPECT_NE(formatErrorOf([&] { readBytes(corrupt); }).find("CRC"), std::string::npos);

    // A size field pointing past the data, into the next entry, or past the file.
    for (uint32_t fake : {20u, 0x7fffffffu}) {
        Bytes z = makeZip({{"ck/data.pkl", pkl}, {"ck/data/0", data16}, {"ck/version", "3\n"}});
        size_t eocd = z.size() - 22;
        size_t cd = rdle(z, eocd + 16, 4);
        size_t second = cd + 46 + std::strlen("ck/data.pkl");
        for (int field : {20, 24})
            for (int k = 0; k < 4; ++k)
                z[second + field + k] = static_cast<uint8_t>(fake >> (8 * k));
        const std::string error = formatErrorOf([&] { readBytes(z); });
        EXPECT_TRUE(error.find("overlap") != std::string::npos || error.find("outside") != std::string::npos) << error;
    }

    // An absurd entry count.
    Bytes z = makeZip({{"ck/data.pkl", pkl}});
    z[z.size() - 22 + 8] = 0xfe;
    z[z.size() - 22 + 9] = 0xff;
    z[z.size() - 22 + 10] = 0xfe;
    z[z.size() - 22 + 11] = 0xff;
    EXPECT_NE(formatErrorOf([&] { readBytes(z); }).find("entries"), std::string::npos);
}

TEST(PickleHostile, BadLegacyFiles)
{
    const Bytes full = readFixture("tiny_seed0_legacy.pth");
    // Magic, version, system info, data, key list: the first record's element count follows.
    size_t keysEnd = 0;
    std::map<std::string, Storage> storages;
    for (int k = 0; k < 5; ++k) {
        size_t used = 0;
        unpickle(&full[keysEnd], full.size() - keysEnd, &storages, nullptr, {}, &used);
        keysEnd += used;
    }
    EXPECT_EQ(storages.size(), 102u);
    ASSERT_LT(keysEnd, full.size());
    EXPECT_EQ(rdle(full, keysEnd, 8), 1u);
    Bytes wrongCount = full;
    wrongCount[keysEnd] = 2;
    EXPECT_NE(formatErrorOf([&] { readBytes(wrongCount); }).find("holds 2 elements, expected 1"), std::string::npos);
    Bytes hugeCount = full;
    hugeCount[keysEnd + 7] = 0x7f;
    EXPECT_THROW(readBytes(hugeCount), FormatError);

    // A legacy header followed by a protocol version other than 1001.
    Bytes header(full.begin(), full.begin() + 15);
    const std::string badVersion = "\x80\x02M\xea\x03.";
    header.insert(header.end(), badVersion.begin(), badVersion.end());
    EXPECT_NE(formatErrorOf([&] { readBytes(header); }).find("version"), std::string::npos);
}

std::string longPut(uint32_t i)
{
    std::string out = "r";
    for (int k = 0; k < 4; ++k)
        out += static_cast<char>((i >> (8 * k)) & 0xff);
    return out;
}

std::string longGet(uint32_t i)
{
    std::string out = "j";
    for (int k = 0; k < 4; ++k)
        out += static_cast<char>((i >> (8 * k)) & 0xff);
    return out;
}

std::string binint(int32_t v)
{
    std::string out = "J";
    for (int k = 0; k < 4; ++k)
        out += static_cast<char>((static_cast<uint32_t>(v) >> (8 * k)) & 0xff);
    return out;
}

// `_rebuild_tensor_v2(("storage", FloatStorage, "0", "cpu", numel), offset, sizes, strides, ...)`
// with the offset, sizes and strides given as pickle text (e.g. "K\x02K\x03\x86").
std::string tensorWith(int numel, const std::string& offset, const std::string& sizes, const std::string& strides)
{
    return global("torch._utils", "_rebuild_tensor_v2") + "((" + binunicode("storage") +
           global("torch", "FloatStorage") + binunicode("0") + binunicode("cpu") + binint(numel) + "tQ" + offset +
           sizes + strides + "\x89}tR";
}

using fec::test::cpuSecondsOf;
using fec::test::kCpuSlack;

TEST(PickleAudit, SharedTupleKeysHashInBoundedTime)
{
    // Eight levels of tuples each holding the previous one 64 times: 64^8 leaves once expanded.
    // Hashing it as a dictionary key used to walk every leaf.
    std::string pkl = kProto2 + "K\x01\x85" + longPut(0) + "0";
    for (uint32_t level = 1; level <= 8; ++level) {
        pkl += "(";
        for (int k = 0; k < 64; ++k)
            pkl += longGet(level - 1);
        pkl += "t" + longPut(level) + "0";
    }
    pkl += "}" + longGet(8) + "Ns" + longGet(8) + "K\x02s.";
    std::string error;
    EXPECT_LT(cpuSecondsOf([&] { error = formatErrorOf([&] { unpickleString(pkl); }); }), 2.0 * kCpuSlack);
    EXPECT_NE(error.find("expand"), std::string::npos) << error;
}

TEST(PickleAudit, RepeatedCallsOnSharedValuesAreBounded)
{
    // OrderedDict(pairs) called 20000 times on one shared list of 20000 equal pairs: 4 * 10^8
    // insertions, none of which adds an item, used to run unpaid.
    std::string pkl = kProto2 + binunicode("a") + "K\x01\x86" + longPut(0) + "0](";
    for (int i = 0; i < 20000; ++i)
        pkl += longGet(0);
    pkl += "e" + longPut(1) + "0" + global("collections", "OrderedDict") + longPut(2) + "0";
    for (int i = 0; i < 20000; ++i)
        pkl += longGet(2) + "(" + longGet(1) + "tR0";
    pkl += "N.";
    std::string error;
    EXPECT_LT(cpuSecondsOf([&] { error = formatErrorOf([&] { unpickleString(pkl); }); }), 3.0 * kCpuSlack);
    EXPECT_NE(error.find("operations"), std::string::npos) << error;
    // Once is fine.
    std::string once = kProto2 + global("collections", "OrderedDict") + "((" + binunicode("a") + "K\x01\x86" +
                       binunicode("b") + "K\x02\x86ltR.";
    EXPECT_EQ(unpickleString(once)->dict.size(), 2u);

    // A 1 MiB string used 100000 times as a key: 100 GB hashed before the fix.
    std::string keys = kProto2 + binunicode(std::string(1 << 20, 'k')) + longPut(0) + "0}";
    for (int i = 0; i < 100000; ++i)
        keys += longGet(0) + "Ns";
    keys += ".";
    EXPECT_LT(cpuSecondsOf([&] { error = formatErrorOf([&] { unpickleString(keys); }); }), 3.0 * kCpuSlack);
    EXPECT_NE(error.find("operations"), std::string::npos) << error;

    // _codecs.encode(s, "latin1") of a shared 1 MiB string, 20000 times: each call copies it,
    // 20 GB held before the copies were charged to the memory limit.
    std::string copies = kProto2 + binunicode(std::string(1 << 20, 'b')) + longPut(0) + "0" +
                         global("_codecs", "encode") + longPut(1) + "0(";
    for (int i = 0; i < 20000; ++i)
        copies += longGet(1) + longGet(0) + binunicode("latin1") + "\x86R";
    copies += "l.";
    Limits quarterGiB;
    quarterGiB.maxPickleMemory = 256ull << 20;
    quarterGiB.maxPickleOps = 1ull << 40;  // the memory charge alone must stop it
    EXPECT_LT(
        cpuSecondsOf([&] { error = formatErrorOf([&] { unpickleString(copies, nullptr, nullptr, quarterGiB); }); }),
        3.0 * kCpuSlack);
    EXPECT_NE(error.find("needs more than 256 MiB of memory"), std::string::npos) << error;
}

TEST(PickleAudit, ExpandedTensorsCannotOutgrowTheFile)
{
    // One float viewed as a 10^6 x 10^6 tensor through zero strides: 4 TB once materialised.
    const std::string huge =
        kProto2 +
        tensorWith(1, binint1(0), binint(1000000) + binint(1000000) + "\x86", binint1(0) + binint1(0) + "\x86") + ".";
    const std::string error = formatErrorOf([&] { unpickleString(huge); });
    EXPECT_NE(error.find("far more than the storages in the file"), std::string::npos) << error;
    // Sizes whose product overflows 64 bits.
    const std::string overflow =
        kProto2 +
        tensorWith(1, binint1(0), "(" + binint(1 << 30) + binint(1 << 30) + binint(1 << 30) + "t",
                   "(" + binint1(0) + binint1(0) + binint1(0) + "t") +
        ".";
    EXPECT_NE(formatErrorOf([&] { unpickleString(overflow); }).find("more than 2^63 bytes"), std::string::npos);
    // A small broadcast view is legal and kept.
    const auto ok = unpickleString(
        kProto2 + tensorWith(3, binint1(0), binint1(4) + binint1(3) + "\x86", binint1(0) + binint1(1) + "\x86") + ".");
    EXPECT_EQ(ok->tensor.sizes, (std::vector<int64_t>{4, 3}));
    // Many full views of one storage add up: 4x its size is allowed, 5x is not.
    Limits strict;
    strict.minTensorBytes = 0;
    auto views = [](int n) {
        std::string p = kProto2 + "(";
        for (int i = 0; i < n; ++i)
            p += tensorWith(4, binint1(0), binint1(4) + "\x85", binint1(1) + "\x85");
        return p + "t.";
    };
    EXPECT_EQ(unpickleString(views(4), nullptr, nullptr, strict)->items.size(), 4u);
    EXPECT_NE(formatErrorOf([&] { unpickleString(views(5), nullptr, nullptr, strict); }).find("far more"),
              std::string::npos);
}

TEST(PickleAudit, ShapesStridesAndOffsetsAreChecked)
{
    struct Case {
        const char* what;
        std::string offset, sizes, strides;
        const char* expected;  // nullptr: accepted
    };
    const Case cases[] = {
        {"negative size", binint1(0), binint(-1) + "\x85", binint1(1) + "\x85", "negative tensor size -1"},
        {"negative stride", binint1(0), binint1(2) + "\x85", binint(-1) + "\x85", "negative tensor stride -1"},
        {"negative offset", binint(-1), binint1(2) + "\x85", binint1(1) + "\x85", "negative tensor storage offset"},
        {"offset past the end", binint1(4), binint1(1) + "\x85", binint1(1) + "\x85", "exceeds its storage"},
        {"last element past the end", binint1(1), binint1(2) + binint1(2) + "\x86", binint1(2) + binint1(1) + "\x86",
         "exceeds its storage"},
        {"huge offset", binint(0x7fffffff), binint1(1) + "\x85", binint1(1) + "\x85", "exceeds its storage"},
        {"sizes and strides differ", binint1(0), binint1(2) + "\x85", binint1(1) + binint1(1) + "\x86",
         "1 sizes but 2 strides"},
        {"size not an integer", binint1(0), binunicode("2") + "\x85", binint1(1) + "\x85", "not an integer"},
        {"sizes not a tuple", binint1(0), binint1(2), binint1(1) + "\x85", "not a tuple"},
        {"empty tensor at the end", binint1(4), binint1(0) + "\x85", binint1(1) + "\x85", nullptr},
        {"empty tensor past the end", binint1(5), binint1(0) + "\x85", binint1(1) + "\x85", "exceeds its storage"},
        {"scalar", binint1(3), ")", ")", nullptr},
        {"scalar past the end", binint1(4), ")", ")", "exceeds its storage"},
        {"transposed view", binint1(0), binint1(2) + binint1(2) + "\x86", binint1(1) + binint1(2) + "\x86", nullptr},
    };
    for (const auto& c : cases) {
        const std::string pkl = kProto2 + tensorWith(4, c.offset, c.sizes, c.strides) + ".";
        const std::string error = formatErrorOf([&] { unpickleString(pkl); });
        if (c.expected)
            EXPECT_NE(error.find(c.expected), std::string::npos) << c.what << ": " << error;
        else
            EXPECT_EQ(error, "(no error)") << c.what;
    }
    // Storage element counts: negative, or more bytes than a file may hold.
    EXPECT_NE(formatErrorOf([&] {
                  unpickleString(kProto2 + tensorWith(-4, binint1(0), ")", ")") + ".");
              }).find("claims -4 elements"),
              std::string::npos);
    Limits small;
    small.maxFileBytes = 1000;
    EXPECT_NE(formatErrorOf([&] {
                  unpickleString(kProto2 + tensorWith(251, binint1(0), ")", ")") + ".", nullptr, nullptr, small);
              }).find("more than a file may hold"),
              std::string::npos);
}

TEST(PickleAudit, ZipSizesAndEntryCountsAreBounded)
{
    // A zip64 entry whose 64-bit size claims 2^62 bytes.
    std::map<std::string, Storage> storages;
    Storage st;
    st.numel = 4;
    st.bytes.assign(16, 1);
    storages["0"] = st;
    TensorRef ref;
    ref.storageKey = "0";
    ref.storageNumel = 4;
    ref.sizes = {4};
    ref.strides = {1};
    auto root = Value::dictionary();
    root->set("w", Value::tensorRef(ref));
    ZipWriteOptions zip64;
    zip64.forceZip64 = true;
    Bytes z = writeTorchZip(*root, storages, "ck", zip64);
    ASSERT_NO_THROW(readBytes(z));
    const std::string name = "ck/data/0";
    // The central directory record of data/0: its zip64 extra field follows the name.
    size_t at = 0;
    for (size_t i = z.size() - name.size(); i-- > 0;)
        if (z[i] == 'P' && rdle(z, i, 4) == 0x02014b50 && std::memcmp(&z[i + 46], name.data(), name.size()) == 0) {
            at = i + 46 + name.size();
            break;
        }
    ASSERT_GT(at, 0u);
    ASSERT_EQ(rdle(z, at, 2), 1u);
    for (int field = 0; field < 2; ++field)
        for (int k = 0; k < 8; ++k)
            z[at + 4 + 8 * field + k] = k == 7 ? 0x40 : 0;
    EXPECT_NE(formatErrorOf([&] { readBytes(z); }).find("outside the file"), std::string::npos);

    // 60000 entries: read in bounded time, the extra ones ignored.
    const std::string pkl = kProto2 + tensorPickle("FloatStorage", "0", 4, 4) + ".";
    std::vector<TestEntry> many{{"ck/data.pkl", pkl}, {"ck/data/0", std::string(16, '\x01')}};
    for (int i = 0; i < 60000; ++i)
        many.push_back({"ck/extra/" + std::to_string(i), ""});
    const Bytes big = makeZip(many);
    EXPECT_LT(cpuSecondsOf([&] { EXPECT_EQ(readBytes(big).storages.size(), 1u); }), 3.0 * kCpuSlack);
}

// Hardening round 2: files that PyTorch would read differently from us, and gadgets.

const std::string kMagicLong("\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 12);

// `module.name("id")` with its result dropped: what a pickle can run before the value it returns.
std::string hiddenCall(const std::string& module, const std::string& name)
{
    return global(module, name) + "(" + binunicode("id") + "tR0";
}

// A legacy torch.save file holding {extraRoot..., "w": 4 floats of storage "0"}; before[k] starts
// its k-th pickle (magic number, protocol version, system information, data, storage keys).
Bytes legacyWith(const std::vector<std::string>& before, const std::string& extraRoot = "")
{
    auto at = [&](size_t k) { return k < before.size() ? before[k] : std::string(); };
    std::string out;
    out += kProto2 + at(0) + kMagicLong + ".";
    out += kProto2 + at(1) + "M\xe9\x03.";
    out += kProto2 + at(2) + "}" + binunicode("little_endian") + "\x88s.";
    out += kProto2 + at(3) + "}(" + extraRoot + binunicode("w") + tensorPickle("FloatStorage", "0", 4, 4) + "u.";
    out += kProto2 + at(4) + "(" + binunicode("0") + "l.";
    out += std::string("\x04\0\0\0\0\0\0\0", 8) + std::string(16, '\x01');
    return Bytes(out.begin(), out.end());
}

const std::string kBenignPkl = kProto2 + "}" + binunicode("w") + tensorPickle("FloatStorage", "0", 4, 4) + "s.";
const std::string kPayloadPkl = kProto2 + "}(" + binunicode("w") + tensorPickle("FloatStorage", "0", 4, 4) +
                                binunicode("p") + global("posix", "system") + "(" + binunicode("id") + "tRu.";

// A benign zip, then a second directory listing a payload data.pkl, whose end record says
// `lastComment` comment bytes follow (0: it ends the file).
Bytes zipWithTwoDirectories(uint16_t lastComment)
{
    const std::string data16(16, '\x01');
    const std::vector<TestEntry> first{{"ck/data.pkl", kBenignPkl}, {"ck/data/0", data16}};
    Bytes z;
    std::vector<uint64_t> offsets;
    for (const auto& e : first)
        offsets.push_back(addLocalEntry(z, e));
    const uint64_t payload = addLocalEntry(z, {"ck/data.pkl", kPayloadPkl});
    addDirectory(z, first, offsets);
    addDirectory(z, {{"ck/data.pkl", kPayloadPkl}, {"ck/data/0", data16}}, {payload, offsets[1]}, lastComment);
    return z;
}

TEST(PickleHardening, ZipEndRecordIsChosenAsPyTorchDoes)
{
    // PyTorch (miniz) takes the last end record with 22 bytes after it, whatever its comment
    // length; we used to skip one whose comment runs past the end and read the benign directory.
    const std::string error = formatErrorOf([] { readBytes(zipWithTwoDirectories(100)); });
    EXPECT_NE(error.find("end of central directory record (offset"), std::string::npos) << error;
    EXPECT_NE(error.find("says 100 comment bytes follow it, but 0 do"), std::string::npos) << error;
    // When the last record ends the file, it is the one read, as PyTorch does: the payload shows.
    const Archive last = readBytes(zipWithTwoDirectories(0));
    EXPECT_EQ(last.ignoredGlobals, std::vector<std::string>{"posix.system"});
    EXPECT_NE(last.root->get("p"), nullptr);
    // Bytes after an end record that claims no comment: refused too.
    Bytes trailing = makeZip({{"ck/data.pkl", kBenignPkl}, {"ck/data/0", std::string(16, '\x01')}});
    ASSERT_NO_THROW(readBytes(trailing));
    trailing.insert(trailing.end(), 30, 'x');
    EXPECT_NE(formatErrorOf([&] { readBytes(trailing); }).find("says 0 comment bytes follow it, but 30 do"),
              std::string::npos);
}

TEST(PickleHardening, ZipNamesAndCountsAreReadAsPyTorchDoes)
{
    const std::string data16(16, '\x01');
    // PyTorch finds "data.pkl" ignoring case: two names that differ only in case are ambiguous.
    EXPECT_NE(
        formatErrorOf([&] {
            readBytes(makeZip({{"ck/data.pkl", kBenignPkl}, {"ck/DATA.pkl", kPayloadPkl}, {"ck/data/0", data16}}));
        }).find("zip entries \"ck/data.pkl\" and \"ck/DATA.pkl\" differ only in case"),
        std::string::npos);
    // Entry counts that disagree (PyTorch refuses the archive).
    Bytes z = makeZip({{"ck/data.pkl", kBenignPkl}, {"ck/data/0", data16}});
    z[z.size() - 22 + 8] = 1;
    EXPECT_NE(formatErrorOf([&] { readBytes(z); }).find("counts 1 entries on this disk but 2 in all"),
              std::string::npos);
}

TEST(PickleHardening, ContainerIsChosenAsPyTorchDoes)
{
    // torch.load reads a file as a zip only when it starts with a local file header. A legacy
    // file with a zip appended used to be read as the zip, while PyTorch runs the legacy pickles.
    Bytes polyglot = legacyWith({hiddenCall("posix", "system")});
    const Bytes zip = makeZip({{"ck/data.pkl", kBenignPkl}, {"ck/data/0", std::string(16, '\x01')}});
    polyglot.insert(polyglot.end(), zip.begin(), zip.end());
    const Archive a = readBytes(polyglot);
    EXPECT_EQ(a.format, ContainerFormat::Legacy);
    EXPECT_EQ(a.ignoredGlobals, std::vector<std::string>{"posix.system"});
    // A zip directory in a file that does not start with a zip entry: not read as a zip.
    Bytes shifted(zip.size() + 1, 'x');
    std::copy(zip.begin(), zip.end(), shifted.begin() + 1);
    EXPECT_NE(formatErrorOf([&] { readBytes(shifted); }).find("does not start with a zip entry"), std::string::npos);

    // A legacy file whose first 512 bytes also make a valid (pre-POSIX) tar header: torch.load
    // would open it as a tar archive first.
    Bytes tar = legacyWith({}, binunicode("pad") + binunicode(std::string(600, 'a')));
    ASSERT_NO_THROW(readBytes(tar));
    const size_t pad = std::search_n(tar.begin(), tar.end(), 600, 'a') - tar.begin();
    ASSERT_TRUE(pad <= 148 && pad + 600 >= 156);
    uint32_t sum = 8 * ' ';
    for (size_t i = 0; i < 512; ++i)
        sum += (i >= 148 && i < 156) ? 0 : tar[i];
    char field[9];
    std::snprintf(field, sizeof field, "%06o", static_cast<unsigned>(sum));
    std::memcpy(&tar[148], field, 6);
    tar[154] = 0;
    tar[155] = ' ';
    EXPECT_NE(formatErrorOf([&] { readBytes(tar); }).find("legacy tar checkpoints"), std::string::npos);
}

TEST(PickleHardening, LegacyHeaderGlobalsAreReported)
{
    EXPECT_TRUE(readBytes(legacyWith({})).ignoredGlobals.empty());
    // torch.load runs all five pickles of a legacy file; each global in any of them is listed.
    const Archive a = readBytes(legacyWith({hiddenCall("posix", "system"), hiddenCall("nt", "system"),
                                            hiddenCall("builtins", "exec"), "", hiddenCall("subprocess", "Popen")}));
    EXPECT_EQ(a.ignoredGlobals,
              (std::vector<std::string>{"posix.system", "nt.system", "builtins.exec", "subprocess.Popen"}));
    EXPECT_EQ(a.root->get("w")->tensor.sizes, std::vector<int64_t>{4});
    // A first pickle that runs something and is no magic number is refused, naming what it runs.
    const std::string notMagic = kProto2 + hiddenCall("posix", "system") + "K\x01.";
    const std::string error = formatErrorOf([&] { readBytes(Bytes(notMagic.begin(), notMagic.end())); });
    EXPECT_NE(error.find("not a PyTorch checkpoint: its first pickle names posix.system"), std::string::npos) << error;
}

TEST(PickleHardening, NestedPicklesAreNamed)
{
    // torch.storage._load_from_bytes(b) is torch.load(b): a second pickle, never read here.
    const std::string nested = global("torch.storage", "_load_from_bytes") + "(C\x04" + "abcd" + "tR";
    std::vector<std::string> ignored;
    const auto v = unpickleString(kProto2 + nested + ".", nullptr, &ignored);
    EXPECT_TRUE(v->isNestedPickle());
    EXPECT_EQ(v->describe(), "a nested pickle (torch.storage._load_from_bytes), not loaded");
    EXPECT_EQ(ignored, std::vector<std::string>{"torch.storage._load_from_bytes"});
    EXPECT_FALSE(unpickleString(kProto2 + global("torch._utils", "_rebuild_qtensor") + ")R.")->isNestedPickle());
    // As the data of a tensor.
    const std::string asData = kProto2 + global("torch._utils", "_rebuild_tensor_v2") + "(" + nested + binint1(0) +
                               binint1(4) + "\x85" + binint1(1) + "\x85" + "\x89}tR.";
    EXPECT_NE(formatErrorOf([&] {
                  unpickleString(asData);
              }).find("is a nested pickle (torch.storage._load_from_bytes), not loaded"),
              std::string::npos);
}

}  // namespace
