#include "fec/npy.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "fec/atomic_file.h"

namespace fec::npy {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;
constexpr std::size_t kMaxHeaderBytes = 1 << 20;
constexpr std::size_t kMaxDims = 64;

[[noreturn]] void fail(const std::string& why)
{
    throw std::runtime_error(why);
}

struct DescrInfo {
    std::string canonical;  // "<f4", "|u1", ...
    std::size_t itemSize = 0;
};

// Accepts little-endian (or byte-sized) numeric and bool dtypes; returns the canonical spelling.
DescrInfo checkDescr(const std::string& descr)
{
    if (descr.size() >= 2 && descr[1] == 'O')
        fail("object arrays (dtype '" + descr + "') are not supported");
    if (descr.size() < 3)
        fail("unsupported dtype '" + descr + "'");
    const char order = descr[0];
    const char kind = descr[1];
    const std::string digits = descr.substr(2);
    if (order != '<' && order != '>' && order != '|' && order != '=')
        fail("unsupported dtype '" + descr + "'");
    std::size_t size = 0;
    if (digits == "1")
        size = 1;
    else if (digits == "2")
        size = 2;
    else if (digits == "4")
        size = 4;
    else if (digits == "8")
        size = 8;
    bool ok = false;
    switch (kind) {
    case 'f':
        ok = size == 2 || size == 4 || size == 8;
        break;
    case 'i':
    case 'u':
        ok = size != 0;
        break;
    case 'b':
        ok = size == 1;
        break;
    default:
        break;
    }
    if (!ok)
        fail("unsupported dtype '" + descr + "' (supported: float16/32/64, int8-64, uint8-64, bool)");
    if (order == '>' && size > 1)
        fail("big-endian data (dtype '" + descr + "') is not supported");
    if (order == '|' && size > 1)
        fail("unsupported dtype '" + descr + "' (no byte order given)");
    DescrInfo info;
    info.itemSize = size;
    info.canonical = std::string(1, size == 1 ? '|' : '<') + kind + digits;
    return info;
}

// Parser for the Python dict literal NumPy writes as the header.
class HeaderParser {
public:
    explicit HeaderParser(const std::string& text) : text_(text) {}

    void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape)
    {
        bool haveDescr = false, haveFortran = false, haveShape = false;
        skipSpace();
        expect('{');
        for (;;) {
            skipSpace();
            if (peek() == '}') {
                ++pos_;
                break;
            }
            const std::string key = parseString();
            skipSpace();
            expect(':');
            skipSpace();
            if (key == "descr") {
                if (peek() == '[')
                    fail("structured dtypes are not supported");
                descr = parseString();
                haveDescr = true;
            } else if (key == "fortran_order") {
                fortran = parseBool();
                haveFortran = true;
            } else if (key == "shape") {
                shape = parseShape();
                haveShape = true;
            } else {
                fail("unexpected key '" + key + "' in the header");
            }
            skipSpace();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            skipSpace();
            expect('}');
            break;
        }
        if (!haveDescr || !haveFortran || !haveShape)
            fail("the header lacks 'descr', 'fortran_order' or 'shape'");
    }

private:
    char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

    void skipSpace()
    {
        while (pos_ < text_.size() &&
               (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
            ++pos_;
    }

    void expect(char c)
    {
        if (peek() != c)
            fail(std::string("malformed header (expected '") + c + "' at position " + std::to_string(pos_) + ")");
        ++pos_;
    }

    std::string parseString()
    {
        const char quote = peek();
        if (quote != '\'' && quote != '"')
            fail("malformed header (expected a string at position " + std::to_string(pos_) + ")");
        ++pos_;
        std::string out;
        while (pos_ < text_.size() && text_[pos_] != quote) {
            if (text_[pos_] == '\\')
                fail("malformed header (escapes are not supported)");
            out += text_[pos_++];
        }
        expect(quote);
        return out;
    }

    bool parseBool()
    {
        if (text_.compare(pos_, 4, "True") == 0) {
            pos_ += 4;
            return true;
        }
        if (text_.compare(pos_, 5, "False") == 0) {
            pos_ += 5;
            return false;
        }
        fail("malformed header ('fortran_order' is not True or False)");
    }

    int64_t parseInt()
    {
        skipSpace();
        if (peek() < '0' || peek() > '9')
            fail("malformed header (bad dimension in 'shape')");
        int64_t v = 0;
        while (peek() >= '0' && peek() <= '9') {
            const int d = peek() - '0';
            if (v > (std::numeric_limits<int64_t>::max() - d) / 10)
                fail("malformed header (dimension too large)");
            v = v * 10 + d;
            ++pos_;
        }
        // Python 2 era headers may write longs as 3L.
        if (peek() == 'L')
            ++pos_;
        return v;
    }

    std::vector<int64_t> parseShape()
    {
        expect('(');
        std::vector<int64_t> shape;
        for (;;) {
            skipSpace();
            if (peek() == ')') {
                ++pos_;
                return shape;
            }
            if (shape.size() >= kMaxDims)
                fail("too many dimensions in 'shape'");
            shape.push_back(parseInt());
            skipSpace();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            expect(')');
            return shape;
        }
    }

    const std::string& text_;
    std::size_t pos_ = 0;
};

std::string shapeRepr(const std::vector<int64_t>& shape)
{
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i)
            s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1)
        s += ",";
    return s + ")";
}

uint64_t checkedNumel(const std::vector<int64_t>& shape)
{
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0)
            fail("negative dimension in 'shape'");
        if (d != 0 && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
            fail("'shape' is too large");
        n *= static_cast<uint64_t>(d);
    }
    return n;
}

}  // namespace

std::size_t Array::itemSize() const
{
    return checkDescr(descr).itemSize;
}

int64_t Array::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    return n;
}

Array parse(const std::vector<uint8_t>& data)
{
    if (data.size() < kMagicSize + 2 || std::memcmp(data.data(), kMagic, kMagicSize) != 0)
        fail("not a NumPy .npy file (bad magic)");
    const int major = data[6];
    const int minor = data[7];
    if (major < 1 || major > 3 || minor != 0)
        fail("unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor));
    const std::size_t lenBytes = major == 1 ? 2 : 4;
    if (data.size() < 8 + lenBytes)
        fail("truncated .npy header");
    std::size_t headerLen = 0;
    for (std::size_t i = 0; i < lenBytes; ++i)
        headerLen |= static_cast<std::size_t>(data[8 + i]) << (8 * i);
    if (headerLen > kMaxHeaderBytes)
        fail(".npy header too long (" + std::to_string(headerLen) + " bytes)");
    const std::size_t dataStart = 8 + lenBytes + headerLen;
    if (data.size() < dataStart)
        fail("truncated .npy header");
    const std::string header(reinterpret_cast<const char*>(data.data()) + 8 + lenBytes, headerLen);

    Array array;
    bool fortran = false;
    HeaderParser(header).parse(array.descr, fortran, array.shape);
    const DescrInfo info = checkDescr(array.descr);
    array.descr = info.canonical;
    // For 0-d and 1-d arrays both orders are the same layout.
    if (fortran && array.shape.size() > 1)
        fail("Fortran-order arrays are not supported");
    const uint64_t numel = checkedNumel(array.shape);
    if (numel > std::numeric_limits<uint64_t>::max() / info.itemSize)
        fail("'shape' is too large");
    const uint64_t bytes = numel * info.itemSize;
    const uint64_t available = data.size() - dataStart;
    if (bytes > available)
        fail("truncated payload: the shape needs " + std::to_string(bytes) + " bytes, the file holds " +
             std::to_string(available));
    array.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(dataStart),
                       data.begin() + static_cast<std::ptrdiff_t>(dataStart + bytes));
    return array;
}

Array read(const std::string& path)
{
    const auto data = readFileBytes(path);
    try {
        return parse(data);
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
}

std::vector<uint8_t> serialize(const Array& array)
{
    const DescrInfo info = checkDescr(array.descr);
    const uint64_t numel = checkedNumel(array.shape);
    if (numel > std::numeric_limits<uint64_t>::max() / info.itemSize || numel * info.itemSize != array.bytes.size())
        fail("array holds " + std::to_string(array.bytes.size()) + " bytes, its shape " + shapeRepr(array.shape) +
             " needs " + std::to_string(numel * info.itemSize));

    // Same text and padding as numpy.save (incl. the spare room NumPy leaves to grow axis 0).
    std::string header =
        "{'descr': '" + info.canonical + "', 'fortran_order': False, 'shape': " + shapeRepr(array.shape) + ", }";
    if (!array.shape.empty()) {
        const std::size_t digits = std::to_string(array.shape[0]).size();
        if (digits < 21)
            header.append(21 - digits, ' ');
    }
    int major = 1;
    std::size_t prefix = kMagicSize + 2 + 2;
    if ((header.size() + 1 + prefix + 63) / 64 * 64 - prefix > 65535) {
        major = 2;
        prefix = kMagicSize + 2 + 4;
    }
    const std::size_t total = (header.size() + 1 + prefix + 63) / 64 * 64;
    header.append(total - prefix - header.size() - 1, ' ');
    header += '\n';

    std::vector<uint8_t> out;
    out.reserve(total + array.bytes.size());
    out.insert(out.end(), kMagic, kMagic + kMagicSize);
    out.push_back(static_cast<uint8_t>(major));
    out.push_back(0);
    const std::size_t len = header.size();
    for (std::size_t i = 0; i < prefix - kMagicSize - 2; ++i)
        out.push_back(static_cast<uint8_t>(len >> (8 * i)));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), array.bytes.begin(), array.bytes.end());
    return out;
}

void write(const std::string& path, const Array& array)
{
    std::vector<uint8_t> bytes;
    try {
        bytes = serialize(array);
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot write " + path + ": " + e.what());
    }
    writeFileAtomic(path, bytes);
}

}  // namespace fec::npy
