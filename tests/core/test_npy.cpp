#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "fec/atomic_file.h"
#include "fec/npy.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

std::string referenceDir()
{
    if (const char* env = std::getenv("FEC_REFERENCE_DIR"))
        return env;
    return FEC_REFERENCE_DIR_DEFAULT;  // tests/fixtures/reference in the repository
}

Bytes readFixture(const std::string& name)
{
    const std::string path = referenceDir() + "/" + name;
    if (!fs::exists(path))
        throw std::runtime_error("fixture " + path + " not found (set FEC_REFERENCE_DIR)");
    return fec::readFileBytes(path);
}

// A fresh folder under the system temp folder, removed at the end of the test.
class TempDir {
public:
    TempDir()
    {
        std::string pattern = (fs::temp_directory_path() / "fec_npy_test_XXXXXX").string();
        if (!::mkdtemp(pattern.data()))
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir()
    {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::vector<std::string> names() const
    {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(path_))
            out.push_back(e.path().filename().string());
        return out;
    }

private:
    fs::path path_;
};

// An .npy file with the given header text (format 1.0).
Bytes npyWithHeader(const std::string& dict, size_t payload)
{
    std::string header = dict;
    while ((10 + header.size() + 1) % 64)
        header += ' ';
    header += '\n';
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    b.push_back(static_cast<uint8_t>(header.size()));
    b.push_back(static_cast<uint8_t>(header.size() >> 8));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + payload, 0x5a);
    return b;
}

std::string errorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(Npy, ReadsTheInputBatchFixture)
{
    const Bytes file = readFixture("inputs/input_batch.npy");
    const fec::npy::Array a = fec::npy::parse(file);
    EXPECT_EQ(a.descr, "<f4");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 224, 224}));
    EXPECT_EQ(a.itemSize(), 4u);
    EXPECT_EQ(a.numel(), 2 * 3 * 224 * 224);
    ASSERT_EQ(a.bytes.size(), 2u * 3 * 224 * 224 * 4);
    EXPECT_EQ(std::memcmp(a.bytes.data(), file.data() + 128, a.bytes.size()), 0);
    // The normalised chelsea image stays within a few standard deviations.
    float lo = 1e9f, hi = -1e9f;
    for (size_t i = 0; i < 3 * 224 * 224; ++i) {
        float v;
        std::memcpy(&v, a.bytes.data() + 4 * i, 4);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    EXPECT_GE(lo, -2.2f);
    EXPECT_LE(hi, 2.7f);
    EXPECT_LT(lo, -1.0f);
    EXPECT_GT(hi, 1.0f);
    // serialize() reproduces numpy.save byte for byte.
    EXPECT_EQ(fec::npy::serialize(a), file);
}

TEST(Npy, ReadsIntegerAndByteFixtures)
{
    const Bytes file = readFixture("fec_small_seed0/network.1.assign.npy");
    const auto a = fec::npy::read(referenceDir() + "/fec_small_seed0/network.1.assign.npy");
    EXPECT_EQ(a.descr, "<i8");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3136}));
    ASSERT_EQ(a.bytes.size(), 2u * 3136 * 8);
    // Pool assignments index the 28x28 = 784 centres.
    for (size_t i = 0; i < 2 * 3136; ++i) {
        int64_t v;
        std::memcpy(&v, a.bytes.data() + 8 * i, 8);
        ASSERT_GE(v, 0);
        ASSERT_LT(v, 784);
    }
    EXPECT_EQ(fec::npy::serialize(a), file);

    const Bytes image = readFixture("inputs/chelsea_orig_rgb_uint8.npy");
    const auto u8 = fec::npy::parse(image);
    EXPECT_EQ(u8.descr, "|u1");
    EXPECT_EQ(u8.shape, (std::vector<int64_t>{300, 451, 3}));
    EXPECT_EQ(u8.itemSize(), 1u);
    EXPECT_EQ(fec::npy::serialize(u8), image);
}

TEST(Npy, RoundTripsEveryDtypeThroughFiles)
{
    TempDir dir;
    const std::vector<std::string> descrs = {"<f4", "<f8", "<f2", "<i8", "<i4", "<i2",
                                             "|i1", "|u1", "<u2", "<u4", "<u8", "|b1"};
    const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {5}, {2, 3}, {1, 2, 3, 4}, {12345678901LL, 0}};
    int n = 0;
    for (const auto& d : descrs) {
        for (const auto& shape : shapes) {
            fec::npy::Array a;
            a.descr = d;
            a.shape = shape;
            a.bytes.resize(static_cast<size_t>(a.numel()) * a.itemSize());
            for (size_t i = 0; i < a.bytes.size(); ++i)
                a.bytes[i] = static_cast<uint8_t>(i * 37 + n);
            const std::string path = dir.file("a" + std::to_string(n++) + ".npy");
            fec::npy::write(path, a);
            const Bytes raw = fec::readFileBytes(path);
            EXPECT_EQ((raw[8] | (raw[9] << 8)) + 10, 128) << d;
            const auto b = fec::npy::read(path);
            EXPECT_EQ(b.descr, d);
            EXPECT_EQ(b.shape, shape);
            EXPECT_EQ(b.bytes, a.bytes);
        }
    }
    // No temporary files are left behind.
    for (const auto& name : dir.names())
        EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;
}

TEST(Npy, AcceptsOtherSpellings)
{
    // Format 2.0, double quotes, no trailing comma, '=' byte order, 1-D Fortran order, 3L.
    std::string header = "{\"descr\": \"=i4\", \"shape\": (3L,), \"fortran_order\": True}";
    header += std::string(64 - (12 + header.size() + 1) % 64, ' ') + "\n";
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
    for (int i = 0; i < 4; ++i)
        b.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + 12, 7);
    const auto a = fec::npy::parse(b);
    EXPECT_EQ(a.descr, "<i4");
    EXPECT_EQ(a.shape, std::vector<int64_t>{3});
    EXPECT_EQ(a.bytes, Bytes(12, 7));
    // A 0-d array holds one element.
    const auto scalar = fec::npy::parse(npyWithHeader("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8));
    EXPECT_TRUE(scalar.shape.empty());
    EXPECT_EQ(scalar.bytes.size(), 8u);
}

TEST(Npy, RejectsWhatItCannotRepresent)
{
    const auto parseError = [](const Bytes& b) { return errorOf([&] { fec::npy::parse(b); }); };
    auto withDict = [](const std::string& dict, size_t payload) { return npyWithHeader(dict, payload); };
    EXPECT_NE(parseError(withDict("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8)).find("big-endian"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16)).find("Fortran"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16)).find("object"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<U8', 'fortran_order': False, 'shape': (2,), }", 64)).find("dtype"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8))
                  .find("structured"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23)).find("truncated"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 0)).find("shape"),
              std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<f4', 'shape': (2,), }", 8)).find("fortran_order"), std::string::npos);
    EXPECT_NE(parseError(withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, "
                                  "4294967296), }",
                                  0))
                  .find("large"),
              std::string::npos);
    EXPECT_NE(parseError({'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0}).find("magic"), std::string::npos);
    EXPECT_NE(parseError({}).find("magic"), std::string::npos);
    EXPECT_NE(parseError({0x93, 'N', 'U', 'M', 'P', 'Y', 4, 0, 0, 0}).find("version"), std::string::npos);
    Bytes hugeHeader = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff, '{'};
    EXPECT_NE(parseError(hugeHeader).find("header too long"), std::string::npos);
    Bytes shortHeader = withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    shortHeader.resize(40);
    EXPECT_NE(parseError(shortHeader).find("truncated"), std::string::npos);

    // Every prefix of a real file fails cleanly.
    const Bytes file = readFixture("fec_small_seed0/network.1.assign.npy");
    for (size_t n = 0; n < file.size(); n += n < 200 ? 1 : 997)
        EXPECT_THROW(fec::npy::parse(Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n))),
                     std::runtime_error)
            << n;

    fec::npy::Array bad;
    bad.descr = "<f4";
    bad.shape = {3};
    bad.bytes.resize(8);
    EXPECT_NE(errorOf([&] { fec::npy::serialize(bad); }).find("needs 12"), std::string::npos);
    bad.descr = ">f4";
    EXPECT_THROW(fec::npy::serialize(bad), std::runtime_error);
}

TEST(Npy, FileErrorsNameTheFile)
{
    TempDir dir;
    const std::string missing = dir.file("missing.npy");
    const std::string e1 = errorOf([&] { fec::npy::read(missing); });
    EXPECT_NE(e1.find("cannot open " + missing + ": No such file or directory"), std::string::npos) << e1;
    const std::string e2 = errorOf([&] { fec::npy::read(dir.file("")); });
    EXPECT_NE(e2.find("is a directory"), std::string::npos) << e2;
    const std::string garbage = dir.file("garbage.npy");
    fec::writeFileAtomic(garbage, std::string("not numpy"));
    const std::string e3 = errorOf([&] { fec::npy::read(garbage); });
    EXPECT_EQ(e3.rfind(garbage + ": ", 0), 0u) << e3;

    fec::npy::Array a;
    a.descr = "|u1";
    a.shape = {1};
    a.bytes = {1};
    const std::string noFolder = dir.file("nowhere/x.npy");
    const std::string e4 = errorOf([&] { fec::npy::write(noFolder, a); });
    EXPECT_NE(e4.find("cannot write " + noFolder + ": No such file or directory"), std::string::npos) << e4;
}

TEST(AtomicFile, ReplacesContentAndKeepsMode)
{
    TempDir dir;
    const std::string path = dir.file("f.bin");
    fec::writeFileAtomic(path, std::string("first version"));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    fec::writeFileAtomic(path, Bytes{1, 2, 3});
    EXPECT_EQ(fec::readFileBytes(path), (Bytes{1, 2, 3}));
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    fec::writeFileAtomic(path, nullptr, 0);
    EXPECT_TRUE(fec::readFileBytes(path).empty());

    // Renaming over a folder fails: the folder stays, no temporary file is left.
    const std::string folder = dir.file("folder");
    fs::create_directory(folder);
    const std::string e = errorOf([&] { fec::writeFileAtomic(folder, std::string("x")); });
    EXPECT_EQ(e.rfind("cannot write " + folder + ": ", 0), 0u) << e;
    EXPECT_TRUE(fs::is_directory(folder));
    for (const auto& name : dir.names())
        EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;

    const std::string big = errorOf([&] { fec::readFileBytes(path, 0); });
    EXPECT_EQ(big, "(no error)");
    fec::writeFileAtomic(path, std::string(100, 'x'));
    EXPECT_NE(errorOf([&] { fec::readFileBytes(path, 99); }).find("too large"), std::string::npos);
    EXPECT_EQ(fec::readFileBytes(path, 100).size(), 100u);
}

}  // namespace
