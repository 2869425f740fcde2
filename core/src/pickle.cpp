#include "fec/pickle.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "fec/atomic_file.h"

namespace fec::pickle {

namespace {

[[noreturn]] void fail(const std::string& message)
{
    throw FormatError(message);
}

uint16_t rd16(const uint8_t* p)
{
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

uint32_t rd32(const uint8_t* p)
{
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}

uint64_t rd64(const uint8_t* p)
{
    return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}

void put16(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 2; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put32(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put64(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Quoted, shortened (at a UTF-8 character boundary) and escaped text for messages.
std::string quotedText(const std::string& s, std::size_t max = 60)
{
    std::size_t cut = std::min(max, s.size());
    while (cut > 0 && cut < s.size() && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80)
        --cut;
    std::string out = "\"";
    for (std::size_t i = 0; i < cut; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + (cut < s.size() ? "...\"" : "\"");
}

// Python's repr() of a float: shortest round-tripping digits, exponent only when < -4 or >= 16.
std::string formatDouble(double v)
{
    if (std::isnan(v))
        return "nan";
    if (std::isinf(v))
        return v < 0 ? "-inf" : "inf";
    char buf[40];
    for (int precision = 0; precision <= 16; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*e", precision, v);
        if (std::strtod(buf, nullptr) == v)
            break;
    }
    std::string text = buf;
    const bool negative = text[0] == '-';
    if (negative)
        text.erase(0, 1);
    const auto e = text.find('e');
    const int exponent = std::atoi(text.c_str() + e + 1);
    std::string digits = text.substr(0, e);
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    while (digits.size() > 1 && digits.back() == '0')
        digits.pop_back();
    const int n = static_cast<int>(digits.size());
    std::string out;
    if (exponent >= -4 && exponent < 16) {
        if (exponent >= n - 1)
            out = digits + std::string(static_cast<std::size_t>(exponent - (n - 1)), '0') + ".0";
        else if (exponent >= 0)
            out = digits.substr(0, static_cast<std::size_t>(exponent + 1)) + "." +
                  digits.substr(static_cast<std::size_t>(exponent + 1));
        else
            out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    } else {
        char exp[16];
        std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
        out = digits.substr(0, 1) + (n > 1 ? "." + digits.substr(1) : "") + exp;
    }
    return (negative ? "-" : "") + out;
}

// UTF-8 as Python's decoder with "surrogatepass" accepts it (what pickle uses for strings).
bool validUtf8(const std::string& s)
{
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < static_cast<std::size_t>(len))
            return false;
        for (int k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}

void appendUtf8(std::string& out, uint32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

struct CrcTables {
    uint32_t t[8][256];
    CrcTables()
    {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (int k = 1; k < 8; ++k)
            for (uint32_t i = 0; i < 256; ++i)
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
};

uint32_t crc32(const uint8_t* p, std::size_t n)
{
    static const CrcTables tables;
    const auto& t = tables.t;
    uint32_t crc = 0xffffffffu;
    while (n >= 8) {
        const uint32_t a = crc ^ rd32(p);
        const uint32_t b = rd32(p + 4);
        crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^ t[3][b & 0xff] ^
              t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

bool checkedMul(int64_t a, int64_t b, int64_t& out)
{
    return !__builtin_mul_overflow(a, b, &out);
}

bool checkedAdd(int64_t a, int64_t b, int64_t& out)
{
    return !__builtin_add_overflow(a, b, &out);
}

const DType kAllDTypes[] = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int64,
                            DType::Int32,   DType::Int16,   DType::Int8,    DType::UInt8,    DType::Bool};

// Pickle opcodes, named as in Python's pickletools.
namespace op {
constexpr uint8_t MARK = '(';
constexpr uint8_t STOP = '.';
constexpr uint8_t POP = '0';
constexpr uint8_t POP_MARK = '1';
constexpr uint8_t DUP = '2';
constexpr uint8_t FLOAT = 'F';
constexpr uint8_t INT = 'I';
constexpr uint8_t BININT = 'J';
constexpr uint8_t BININT1 = 'K';
constexpr uint8_t LONG = 'L';
constexpr uint8_t BININT2 = 'M';
constexpr uint8_t NONE = 'N';
constexpr uint8_t PERSID = 'P';
constexpr uint8_t BINPERSID = 'Q';
constexpr uint8_t REDUCE = 'R';
constexpr uint8_t STRING = 'S';
constexpr uint8_t BINSTRING = 'T';
constexpr uint8_t SHORT_BINSTRING = 'U';
constexpr uint8_t UNICODE = 'V';
constexpr uint8_t BINUNICODE = 'X';
constexpr uint8_t APPEND = 'a';
constexpr uint8_t BUILD = 'b';
constexpr uint8_t GLOBAL = 'c';
constexpr uint8_t DICT = 'd';
constexpr uint8_t EMPTY_DICT = '}';
constexpr uint8_t APPENDS = 'e';
constexpr uint8_t GET = 'g';
constexpr uint8_t BINGET = 'h';
constexpr uint8_t INST = 'i';
constexpr uint8_t LONG_BINGET = 'j';
constexpr uint8_t LIST = 'l';
constexpr uint8_t EMPTY_LIST = ']';
constexpr uint8_t OBJ = 'o';
constexpr uint8_t PUT = 'p';
constexpr uint8_t BINPUT = 'q';
constexpr uint8_t LONG_BINPUT = 'r';
constexpr uint8_t SETITEM = 's';
constexpr uint8_t TUPLE = 't';
constexpr uint8_t EMPTY_TUPLE = ')';
constexpr uint8_t SETITEMS = 'u';
constexpr uint8_t BINFLOAT = 'G';
constexpr uint8_t PROTO = 0x80;
constexpr uint8_t NEWOBJ = 0x81;
constexpr uint8_t EXT1 = 0x82;
constexpr uint8_t EXT2 = 0x83;
constexpr uint8_t EXT4 = 0x84;
constexpr uint8_t TUPLE1 = 0x85;
constexpr uint8_t TUPLE2 = 0x86;
constexpr uint8_t TUPLE3 = 0x87;
constexpr uint8_t NEWTRUE = 0x88;
constexpr uint8_t NEWFALSE = 0x89;
constexpr uint8_t LONG1 = 0x8a;
constexpr uint8_t LONG4 = 0x8b;
constexpr uint8_t BINBYTES = 'B';
constexpr uint8_t SHORT_BINBYTES = 'C';
constexpr uint8_t SHORT_BINUNICODE = 0x8c;
constexpr uint8_t BINUNICODE8 = 0x8d;
constexpr uint8_t BINBYTES8 = 0x8e;
constexpr uint8_t EMPTY_SET = 0x8f;
constexpr uint8_t ADDITEMS = 0x90;
constexpr uint8_t FROZENSET = 0x91;
constexpr uint8_t NEWOBJ_EX = 0x92;
constexpr uint8_t STACK_GLOBAL = 0x93;
constexpr uint8_t MEMOIZE = 0x94;
constexpr uint8_t FRAME = 0x95;
constexpr uint8_t BYTEARRAY8 = 0x96;
constexpr uint8_t NEXT_BUFFER = 0x97;
constexpr uint8_t READONLY_BUFFER = 0x98;
}  // namespace op

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
            "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
            "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "strided", "sparse_coo",
            "contiguous_format", "channels_last", "preserve_format", "device", "Tensor"};
        if (g.kind == Builtin::Unknown && module == "torch" && opaque.count(name))
            g.kind = Builtin::Opaque;
    } else if ((module == "torch.nn.parameter" && name == "Parameter") ||
               (module == "torch.storage" && name == "TypedStorage") ||
               (module == "torch.serialization" && name == "_get_layout")) {
        g.kind = Builtin::Opaque;
    }
    return g;
}

// Names of the opcodes refused on purpose (extension registry, old-style instances, buffers).
const char* unsupportedOpcodeName(uint8_t code)
{
    switch (code) {
    case op::INST: return "INST";
    case op::OBJ: return "OBJ";
    case op::EXT1: return "EXT1";
    case op::EXT2: return "EXT2";
    case op::EXT4: return "EXT4";
    case op::NEXT_BUFFER: return "NEXT_BUFFER";
    case op::READONLY_BUFFER: return "READONLY_BUFFER";
    default: return nullptr;
    }
}

class Unpickler {
public:
    Unpickler(const uint8_t* data, std::size_t size, std::map<std::string, Storage>& storages,
              std::vector<std::string>& ignored, const Limits& limits)
        : data_(data), size_(size), storages_(storages), ignored_(ignored), limits_(limits)
    {
    }

    Unpickler(const Unpickler&) = delete;
    Unpickler& operator=(const Unpickler&) = delete;

    // Values are shared pointers that may form arbitrarily deep chains or cycles; cut every link
    // of what is not handed out so that nothing is destroyed recursively or leaked.
    ~Unpickler()
    {
        for (auto& v : arena_) {
            if (kept_.count(v.get()))
                continue;
            v->items.clear();
            v->dict.clear();
            v->state.reset();
        }
    }

    ValuePtr run(std::size_t* consumed)
    {
        for (;;) {
            if (++ops_ > limits_.maxPickleOps)
                fail("the pickle has more than " + std::to_string(limits_.maxPickleOps) + " operations");
            opPos_ = pos_;
            if (step(take(1)[0])) {
                ValuePtr result = pop();
                checkResult(result);
                if (consumed)
                    *consumed = pos_;
                return result;
            }
        }
    }

private:
    std::string where() const { return " at offset " + std::to_string(opPos_); }

    [[noreturn]] void truncated() const
    {
        fail("the pickle data is truncated (it ends inside the opcode" + where() + ")");
    }

    const uint8_t* take(std::size_t n)
    {
        if (n > size_ - pos_) {
            if (pos_ == size_ && n == 1 && opPos_ == pos_)
                fail("the pickle data is truncated (no STOP opcode after " + std::to_string(size_) + " bytes)");
            truncated();
        }
        const uint8_t* p = data_ + pos_;
        pos_ += n;
        return p;
    }

    std::string takeString(uint64_t n)
    {
        if (n > size_ - pos_)
            truncated();
        charge(n);
        return std::string(reinterpret_cast<const char*>(take(static_cast<std::size_t>(n))),
                           static_cast<std::size_t>(n));
    }

    std::string readLine(std::size_t maxLen)
    {
        const auto* begin = data_ + pos_;
        const std::size_t avail = std::min(size_ - pos_, maxLen + 1);
        const auto* nl = static_cast<const uint8_t*>(std::memchr(begin, '\n', avail));
        if (!nl) {
            if (avail == maxLen + 1)
                fail("overlong text argument in the pickle" + where());
            truncated();
        }
        const std::size_t len = static_cast<std::size_t>(nl - begin);
        charge(len);
        std::string s(reinterpret_cast<const char*>(begin), len);
        pos_ += len + 1;
        return s;
    }

    // Work beyond the opcode itself (items touched, bytes hashed or copied) is paid from the
    // same budget as opcodes, so that no input runs longer than maxPickleOps steps: one shared
    // value can otherwise make each cheap opcode do unbounded work.
    void spend(uint64_t steps)
    {
        ops_ += steps;
        if (ops_ > limits_.maxPickleOps)
            fail("the pickle needs more than " + std::to_string(limits_.maxPickleOps) + " operations" + where());
    }

    void charge(uint64_t bytes)
    {
        memory_ += bytes;
        if (memory_ > limits_.maxPickleMemory)
            fail("the pickle needs more than " + std::to_string(limits_.maxPickleMemory >> 20) +
                 " MiB of memory (limit)" + where());
    }

    void countItems(uint64_t n)
    {
        items_ += n;
        if (items_ > limits_.maxContainerItems)
            fail("the pickle holds more than " + std::to_string(limits_.maxContainerItems) + " container items");
        charge(n * sizeof(ValuePtr));
    }

    ValuePtr make(Value::Kind kind)
    {
        charge(sizeof(Value) + 48);
        auto v = std::make_shared<Value>();
        v->kind = kind;
        arena_.push_back(v);
        return v;
    }

    ValuePtr makeInt(int64_t i)
    {
        auto v = make(Value::Kind::Int);
        v->i = i;
        return v;
    }

    ValuePtr makeString(std::string s, bool checkUtf8 = true)
    {
        if (checkUtf8 && !validUtf8(s))
            fail("invalid UTF-8 in a string" + where());
        auto v = make(Value::Kind::String);
        v->s = std::move(s);
        return v;
    }

    ValuePtr makeBytes(std::string s)
    {
        auto v = make(Value::Kind::Bytes);
        v->s = std::move(s);
        return v;
    }

    std::size_t frameBase() const { return marks_.empty() ? 0 : marks_.back(); }

    void push(ValuePtr v)
    {
        if ((stack_.size() + 1) * sizeof(ValuePtr) + memory_ > limits_.maxPickleMemory)
            fail("the pickle stack grows beyond the memory limit" + where());
        stack_.push_back(std::move(v));
    }

    ValuePtr pop()
    {
        if (stack_.size() <= frameBase())
            fail("pickle stack underflow" + where());
        ValuePtr v = std::move(stack_.back());
        stack_.pop_back();
        return v;
    }

    ValuePtr& top()
    {
        if (stack_.size() <= frameBase())
            fail("pickle stack underflow" + where());
        return stack_.back();
    }

    std::vector<ValuePtr> popMark()
    {
        if (marks_.empty())
            fail("pickle opcode needs a MARK that is missing" + where());
        const std::size_t k = marks_.back();
        marks_.pop_back();
        std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(k)),
                                    std::make_move_iterator(stack_.end()));
        stack_.resize(k);
        return items;
    }

    ValuePtr makeSequence(Value::Kind kind, std::vector<ValuePtr> items)
    {
        auto v = make(kind);
        countItems(items.size());
        v->items = std::move(items);
        return v;
    }

    void memoPut(uint64_t index)
    {
        ValuePtr v = top();
        auto [it, inserted] = memo_.try_emplace(index);
        if (inserted)
            charge(64);
        it->second = std::move(v);
    }

    void memoGet(uint64_t index)
    {
        auto it = memo_.find(index);
        if (it == memo_.end())
            fail("the pickle refers to memo entry " + std::to_string(index) + " that was never stored" + where());
        push(it->second);
    }

    int64_t parseDecimal(const std::string& text, const char* what)
    {
        const char* b = text.data();
        const char* e = b + text.size();
        if (b != e && *b == '+')
            ++b;
        int64_t v = 0;
        auto r = std::from_chars(b, e, v);
        if (r.ec == std::errc::result_out_of_range)
            fail(std::string(what) + " " + quotedText(text) + " is too large" + where());
        if (r.ec != std::errc() || r.ptr != e || b == e)
            fail(std::string("malformed ") + what + " " + quotedText(text) + where());
        return v;
    }

    ValuePtr decodeLong(const uint8_t* p, std::size_t n)
    {
        if (n == 0)
            return makeInt(0);
        const bool negative = (p[n - 1] & 0x80) != 0;
        bool fits = true;
        for (std::size_t k = 8; k < n; ++k)
            if (p[k] != (negative ? 0xff : 0x00))
                fits = false;
        if (n > 8 && ((p[7] & 0x80) != 0) != negative)
            fits = false;
        if (!fits) {
            // Integers beyond 64 bits (the legacy magic number) stay raw two's-complement bytes.
            auto v = make(Value::Kind::Object);
            v->module = "builtins";
            v->name = "int";
            charge(n);
            v->s.assign(reinterpret_cast<const char*>(p), n);
            return v;
        }
        uint64_t u = negative ? ~0ull : 0ull;
        for (std::size_t k = 0; k < std::min<std::size_t>(n, 8); ++k) {
            u &= ~(0xffull << (8 * k));
            u |= static_cast<uint64_t>(p[k]) << (8 * k);
        }
        return makeInt(static_cast<int64_t>(u));
    }

    // Python's escape decoding for protocol-0 STRING arguments.
    std::string unescapeString(const std::string& line)
    {
        if (line.size() < 2 || (line[0] != '\'' && line[0] != '"') || line.back() != line[0])
            fail("malformed STRING argument" + where());
        const std::string body = line.substr(1, line.size() - 2);
        std::string out;
        for (std::size_t i = 0; i < body.size(); ++i) {
            const char c = body[i];
            if (c != '\\' || i + 1 == body.size()) {
                out += c;
                continue;
            }
            const char e = body[++i];
            switch (e) {
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case '\n': break;
            case 'x': {
                if (i + 2 >= body.size())
                    fail("malformed \\x escape in STRING" + where());
                unsigned value = 0;
                auto r = std::from_chars(body.data() + i + 1, body.data() + i + 3, value, 16);
                if (r.ec != std::errc() || r.ptr != body.data() + i + 3)
                    fail("malformed \\x escape in STRING" + where());
                out += static_cast<char>(value);
                i += 2;
                break;
            }
            default:
                if (e >= '0' && e <= '7') {
                    unsigned value = 0;
                    std::size_t k = i;
                    while (k < body.size() && k < i + 3 && body[k] >= '0' && body[k] <= '7')
                        value = value * 8 + static_cast<unsigned>(body[k++] - '0');
                    out += static_cast<char>(value & 0xff);
                    i = k - 1;
                } else {
                    out += '\\';
                    out += e;
                }
            }
        }
        return out;
    }

    // Python's raw-unicode-escape decoding for protocol-0 UNICODE arguments.
    std::string rawUnicodeToUtf8(const std::string& line)
    {
        std::string out;
        for (std::size_t i = 0; i < line.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(line[i]);
            if (c == '\\' && i + 1 < line.size() && (line[i + 1] == 'u' || line[i + 1] == 'U')) {
                const std::size_t digits = line[i + 1] == 'u' ? 4 : 8;
                if (i + 2 + digits > line.size())
                    fail("malformed \\u escape in UNICODE" + where());
                uint32_t cp = 0;
                auto r = std::from_chars(line.data() + i + 2, line.data() + i + 2 + digits, cp, 16);
                if (r.ec != std::errc() || r.ptr != line.data() + i + 2 + digits || cp > 0x10ffff)
                    fail("malformed \\u escape in UNICODE" + where());
                appendUtf8(out, cp);
                i += 1 + digits;
            } else {
                appendUtf8(out, c);
            }
        }
        return out;
    }

    ValuePtr makeGlobal(const std::string& module, const std::string& name)
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

    ValuePtr makeObject(const Value& cls, const std::vector<ValuePtr>& args)
    {
        auto v = make(Value::Kind::Object);
        v->module = cls.module;
        v->name = cls.name;
        countItems(args.size());
        v->items = args;
        return v;
    }

    // Canonical text of a hashable key, so that SETITEM replaces equal keys as Python does.
    bool canonicalKey(const Value& k, std::string& out, int depth = 0)
    {
        // Shared tuples nest exponentially when expanded; keys that large are not deduplicated.
        if (out.size() > 4096)
            return false;
        switch (k.kind) {
        case Value::Kind::None: out += "n;"; return true;
        case Value::Kind::Bool: out += k.b ? "i1;" : "i0;"; return true;
        case Value::Kind::Int: out += "i" + std::to_string(k.i) + ";"; return true;
        case Value::Kind::Float: {
            if (std::isnan(k.f))
                return false;
            if (std::trunc(k.f) == k.f && std::fabs(k.f) < 9.0e18) {
                out += "i" + std::to_string(static_cast<int64_t>(k.f)) + ";";
                return true;
            }
            uint64_t bits;
            std::memcpy(&bits, &k.f, sizeof bits);
            out += "f" + std::to_string(bits) + ";";
            return true;
        }
        case Value::Kind::String:
        case Value::Kind::Bytes:
            out += k.kind == Value::Kind::String ? 's' : 'b';
            out += std::to_string(k.s.size());
            out += ':';
            out.append(k.s);
            return true;
        case Value::Kind::Global: out += "g" + k.module + "." + k.name + ";"; return true;
        case Value::Kind::Tuple:
            if (depth > 16 || k.items.size() > 64)
                return false;
            out += "t" + std::to_string(k.items.size()) + "(";
            for (const auto& item : k.items)
                if (out.size() > 4096 || !canonicalKey(*item, out, depth + 1))
                    return false;
            out += ")";
            return true;
        default: return false;
        }
    }

    void dictSet(const ValuePtr& d, ValuePtr key, ValuePtr value)
    {
        std::string canon;
        const bool hashable = canonicalKey(*key, canon);
        spend(4 + canon.size() / 4);  // an insertion costs a few opcodes' time, hashing a byte a quarter
        if (hashable) {
            auto& index = dictIndex_[d.get()];
            auto it = index.find(canon);
            if (it != index.end()) {
                d->dict[it->second].second = std::move(value);
                return;
            }
            charge(canon.size() + 64);
            index.emplace(std::move(canon), d->dict.size());
        }
        countItems(2);
        d->dict.emplace_back(std::move(key), std::move(value));
    }

    ValuePtr& dictTarget()
    {
        ValuePtr& d = top();
        if (d->kind != Value::Kind::Dict && d->kind != Value::Kind::Object)
            fail("SETITEM on " + d->describe() + where());
        return d;
    }

    void setItems(std::vector<ValuePtr> kv)
    {
        if (kv.size() % 2)
            fail("odd number of items for a dictionary" + where());
        ValuePtr d = dictTarget();
        for (std::size_t k = 0; k < kv.size(); k += 2)
            dictSet(d, std::move(kv[k]), std::move(kv[k + 1]));
    }

    void appendItems(std::vector<ValuePtr> items)
    {
        ValuePtr& l = top();
        if (l->kind != Value::Kind::List)
            fail("APPEND on " + l->describe() + where());
        countItems(items.size());
        for (auto& item : items)
            l->items.push_back(std::move(item));
    }

    static bool isStorageValue(const Value& v) { return v.kind == Value::Kind::Tensor && !v.module.empty(); }

    int64_t intArg(const ValuePtr& v, const char* what)
    {
        if (v->kind == Value::Kind::Int)
            return v->i;
        if (v->kind == Value::Kind::Bool)
            return v->b ? 1 : 0;
        fail(std::string(what) + " is " + v->describe() + ", not an integer" + where());
    }

    std::vector<int64_t> intList(const ValuePtr& v, const char* what)
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

    bool truthy(const ValuePtr& v)
    {
        switch (v->kind) {
        case Value::Kind::None: return false;
        case Value::Kind::Bool: return v->b;
        case Value::Kind::Int: return v->i != 0;
        default: fail("requires_grad is " + v->describe() + where());
        }
    }

    ValuePtr persistentLoad(const ValuePtr& pid)
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
                 std::to_string(it->second.numel) + "] and as " + dtypeName(g.dtype) + " [" + std::to_string(numel) +
                 "]" + where());
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

    ValuePtr rebuildTensor(const std::vector<ValuePtr>& args, bool v2)
    {
        if (args.size() < 4)
            fail("tensor rebuild has " + std::to_string(args.size()) + " arguments, expected at least 4" + where());
        const Value& storage = *args[0];
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
                 ", far more than the storages in the file (tensor of size " + describeShape(sizes) +
                 " with strides " + describeShape(strides) + ")" + where());

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
    int64_t tensorByteBudget() const
    {
        const double budget = limits_.maxTensorExpansion * static_cast<double>(storageBytes_) +
                              static_cast<double>(limits_.minTensorBytes);
        return budget >= 9.0e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(budget);
    }

    static std::string describeShape(const std::vector<int64_t>& sizes)
    {
        std::string s = "[";
        for (std::size_t k = 0; k < sizes.size(); ++k)
            s += (k ? ", " : "") + std::to_string(sizes[k]);
        return s + "]";
    }

    std::string latin1Bytes(const std::string& utf8)
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

    ValuePtr toBytes(const std::vector<ValuePtr>& args, const std::string& fn)
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

    ValuePtr pairsToDict(ValuePtr d, const ValuePtr& source)
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
    ValuePtr call(const ValuePtr& fn, const ValuePtr& argsValue, bool newObj, int depth = 0)
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
        case Builtin::StorageType: return makeObject(*fn, args);
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
        case Builtin::Bytes: return toBytes(args, full);
        default: break;
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
        case Builtin::RebuildTensorV2: return rebuildTensor(args, true);
        case Builtin::RebuildTensor: return rebuildTensor(args, false);
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
        default: fail("cannot call " + full + where());
        }
    }

    void build()
    {
        ValuePtr state = pop();
        ValuePtr& target = top();
        switch (target->kind) {
        case Value::Kind::Object: target->state = std::move(state); return;
        // OrderedDict attributes (state_dict()'s `_metadata`) and tensor subclass state are not needed.
        case Value::Kind::Dict:
        case Value::Kind::Tensor: return;
        default: fail("BUILD on " + target->describe() + where());
        }
    }

    // Returns true on STOP.
    bool step(uint8_t code)
    {
        switch (code) {
        case op::PROTO: {
            const int proto = take(1)[0];
            if (proto > 5)
                fail("unsupported pickle protocol " + std::to_string(proto) + where());
            return false;
        }
        case op::FRAME: {
            const uint64_t n = rd64(take(8));
            if (n > size_ - pos_)
                truncated();
            return false;
        }
        case op::STOP: return true;
        case op::MARK:
            if (marks_.size() >= limits_.maxDepth)
                fail("the pickle nests deeper than " + std::to_string(limits_.maxDepth) + " levels" + where());
            marks_.push_back(stack_.size());
            return false;
        case op::POP:
            if (stack_.size() > frameBase())
                stack_.pop_back();
            else
                popMark();
            return false;
        case op::POP_MARK: popMark(); return false;
        case op::DUP: push(top()); return false;
        case op::NONE: push(make(Value::Kind::None)); return false;
        case op::NEWTRUE:
        case op::NEWFALSE: {
            auto v = make(Value::Kind::Bool);
            v->b = code == op::NEWTRUE;
            push(v);
            return false;
        }
        case op::INT: {
            const std::string line = readLine(64);
            if (line == "00" || line == "01") {
                auto v = make(Value::Kind::Bool);
                v->b = line == "01";
                push(v);
            } else {
                push(makeInt(parseDecimal(line, "integer")));
            }
            return false;
        }
        case op::BININT: push(makeInt(static_cast<int32_t>(rd32(take(4))))); return false;
        case op::BININT1: push(makeInt(take(1)[0])); return false;
        case op::BININT2: push(makeInt(rd16(take(2)))); return false;
        case op::LONG: {
            std::string line = readLine(64);
            if (!line.empty() && line.back() == 'L')
                line.pop_back();
            push(makeInt(parseDecimal(line, "integer")));
            return false;
        }
        case op::LONG1: {
            const std::size_t n = take(1)[0];
            push(decodeLong(take(n), n));
            return false;
        }
        case op::LONG4: {
            const int32_t n = static_cast<int32_t>(rd32(take(4)));
            if (n < 0)
                fail("negative LONG4 length" + where());
            push(decodeLong(take(static_cast<std::size_t>(n)), static_cast<std::size_t>(n)));
            return false;
        }
        case op::FLOAT: {
            const std::string line = readLine(64);
            double d = 0;
            auto r = std::from_chars(line.data(), line.data() + line.size(), d);
            if (r.ec != std::errc() || r.ptr != line.data() + line.size())
                fail("malformed FLOAT " + quotedText(line) + where());
            auto v = make(Value::Kind::Float);
            v->f = d;
            push(v);
            return false;
        }
        case op::BINFLOAT: {  // big-endian
            const uint8_t* p = take(8);
            uint64_t bits = 0;
            for (int k = 0; k < 8; ++k)
                bits = (bits << 8) | p[k];
            auto v = make(Value::Kind::Float);
            std::memcpy(&v->f, &bits, sizeof bits);
            push(v);
            return false;
        }
        case op::STRING: {
            std::string s = unescapeString(readLine(size_));
            push(validUtf8(s) ? makeString(std::move(s), false) : makeBytes(std::move(s)));
            return false;
        }
        case op::BINSTRING:
        case op::SHORT_BINSTRING: {
            int64_t n = code == op::SHORT_BINSTRING ? take(1)[0] : static_cast<int32_t>(rd32(take(4)));
            if (n < 0)
                fail("negative BINSTRING length" + where());
            std::string s = takeString(static_cast<uint64_t>(n));
            push(validUtf8(s) ? makeString(std::move(s), false) : makeBytes(std::move(s)));
            return false;
        }
        case op::UNICODE: push(makeString(rawUnicodeToUtf8(readLine(size_)))); return false;
        case op::BINUNICODE: push(makeString(takeString(rd32(take(4))))); return false;
        case op::SHORT_BINUNICODE: push(makeString(takeString(take(1)[0]))); return false;
        case op::BINUNICODE8: push(makeString(takeString(rd64(take(8))))); return false;
        case op::BINBYTES: push(makeBytes(takeString(rd32(take(4))))); return false;
        case op::SHORT_BINBYTES: push(makeBytes(takeString(take(1)[0]))); return false;
        case op::BINBYTES8:
        case op::BYTEARRAY8: push(makeBytes(takeString(rd64(take(8))))); return false;
        case op::EMPTY_LIST: push(make(Value::Kind::List)); return false;
        case op::EMPTY_SET: push(make(Value::Kind::List)); return false;
        case op::EMPTY_TUPLE: push(make(Value::Kind::Tuple)); return false;
        case op::EMPTY_DICT: push(make(Value::Kind::Dict)); return false;
        case op::APPEND: {
            ValuePtr v = pop();
            appendItems({std::move(v)});
            return false;
        }
        case op::APPENDS: appendItems(popMark()); return false;
        case op::ADDITEMS: {
            auto items = popMark();
            appendItems(std::move(items));
            return false;
        }
        case op::LIST: push(makeSequence(Value::Kind::List, popMark())); return false;
        case op::FROZENSET: push(makeSequence(Value::Kind::List, popMark())); return false;
        case op::TUPLE: push(makeSequence(Value::Kind::Tuple, popMark())); return false;
        case op::TUPLE1:
        case op::TUPLE2:
        case op::TUPLE3: {
            const std::size_t n = code - op::TUPLE1 + 1u;
            if (stack_.size() < frameBase() + n)
                fail("pickle stack underflow" + where());
            std::vector<ValuePtr> items(std::make_move_iterator(stack_.end() - static_cast<std::ptrdiff_t>(n)),
                                        std::make_move_iterator(stack_.end()));
            stack_.resize(stack_.size() - n);
            push(makeSequence(Value::Kind::Tuple, std::move(items)));
            return false;
        }
        case op::DICT: {
            auto kv = popMark();
            push(make(Value::Kind::Dict));
            setItems(std::move(kv));
            return false;
        }
        case op::SETITEM: {
            ValuePtr value = pop();
            ValuePtr key = pop();
            ValuePtr d = dictTarget();
            dictSet(d, std::move(key), std::move(value));
            return false;
        }
        case op::SETITEMS: setItems(popMark()); return false;
        case op::GLOBAL: {
            std::string module = readLine(1024);
            std::string name = readLine(1024);
            push(makeGlobal(module, name));
            return false;
        }
        case op::STACK_GLOBAL: {
            ValuePtr name = pop();
            ValuePtr module = pop();
            if (module->kind != Value::Kind::String || name->kind != Value::Kind::String)
                fail("STACK_GLOBAL with non-string names" + where());
            push(makeGlobal(module->s, name->s));
            return false;
        }
        case op::REDUCE: {
            ValuePtr args = pop();
            ValuePtr fn = pop();
            push(call(fn, args, false));
            return false;
        }
        case op::NEWOBJ: {
            ValuePtr args = pop();
            ValuePtr cls = pop();
            push(call(cls, args, true));
            return false;
        }
        case op::NEWOBJ_EX: {
            ValuePtr kwargs = pop();
            ValuePtr args = pop();
            ValuePtr cls = pop();
            if (kwargs->kind != Value::Kind::Dict)
                fail("NEWOBJ_EX keyword arguments are " + kwargs->describe() + where());
            push(call(cls, args, true));
            return false;
        }
        case op::BUILD: build(); return false;
        case op::PUT: memoPut(static_cast<uint64_t>(parseDecimal(readLine(32), "memo index"))); return false;
        case op::BINPUT: memoPut(take(1)[0]); return false;
        case op::LONG_BINPUT: memoPut(rd32(take(4))); return false;
        case op::MEMOIZE: memoPut(memo_.size()); return false;
        case op::GET: memoGet(static_cast<uint64_t>(parseDecimal(readLine(32), "memo index"))); return false;
        case op::BINGET: memoGet(take(1)[0]); return false;
        case op::LONG_BINGET: memoGet(rd32(take(4))); return false;
        case op::PERSID: {
            ValuePtr pid = makeString(readLine(1024));
            push(persistentLoad(pid));
            return false;
        }
        case op::BINPERSID: {
            ValuePtr pid = pop();
            push(persistentLoad(pid));
            return false;
        }
        default: {
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02x", code);
            if (const char* name = unsupportedOpcodeName(code))
                fail(std::string("unsupported pickle opcode ") + name + " (" + hex + ")" + where());
            fail(std::string("unknown pickle opcode ") + hex + where());
        }
        }
    }

    // Rejects results that would make a naive recursive walk explode: cycles, nesting deeper than
    // maxDepth, or shared references that expand to more than maxContainerItems items.
    void checkResult(const ValuePtr& root)
    {
        struct Info {
            uint32_t depth;
            uint64_t expanded;
        };
        struct Frame {
            const Value* v;
            std::size_t next;
            uint32_t depth;
            uint64_t expanded;
        };
        std::unordered_map<const Value*, Info> done;
        std::unordered_set<const Value*> active;
        std::vector<Frame> frames;
        const uint64_t cap = limits_.maxContainerItems;

        auto childCount = [](const Value* v) { return v->items.size() + 2 * v->dict.size() + (v->state ? 1 : 0); };
        auto child = [](const Value* v, std::size_t k) -> const Value* {
            if (k < v->items.size())
                return v->items[k].get();
            k -= v->items.size();
            if (k < 2 * v->dict.size())
                return (k % 2 ? v->dict[k / 2].second : v->dict[k / 2].first).get();
            return v->state.get();
        };

        frames.push_back({root.get(), 0, 0, 0});
        active.insert(root.get());
        while (!frames.empty()) {
            Frame& f = frames.back();
            if (f.next < childCount(f.v)) {
                const Value* c = child(f.v, f.next++);
                if (auto it = done.find(c); it != done.end()) {
                    f.depth = std::max(f.depth, it->second.depth);
                    f.expanded = std::min(cap + 1, f.expanded + it->second.expanded);
                } else if (active.count(c)) {
                    fail("the pickle builds a container that contains itself");
                } else if (childCount(c) == 0) {
                    done.emplace(c, Info{1, 1});
                    f.depth = std::max<uint32_t>(f.depth, 1);
                    f.expanded = std::min(cap + 1, f.expanded + 1);
                } else {
                    if (frames.size() >= limits_.maxDepth)
                        fail("the pickle nests containers deeper than " + std::to_string(limits_.maxDepth) + " levels");
                    active.insert(c);
                    frames.push_back({c, 0, 0, 0});
                }
                continue;
            }
            const Info info{f.depth + 1, std::min(cap + 1, f.expanded + 1)};
            if (info.expanded > cap)
                fail("the pickle's shared references expand to more than " + std::to_string(cap) + " items");
            active.erase(f.v);
            done.emplace(f.v, info);
            frames.pop_back();
            if (!frames.empty()) {
                Frame& parent = frames.back();
                parent.depth = std::max(parent.depth, info.depth);
                parent.expanded = std::min(cap + 1, parent.expanded + info.expanded);
            }
        }
        kept_.reserve(done.size() + 1);
        kept_.insert(root.get());
        for (const auto& entry : done)
            kept_.insert(entry.first);
    }

    const uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::size_t opPos_ = 0;
    std::map<std::string, Storage>& storages_;
    std::vector<std::string>& ignored_;
    const Limits& limits_;

    std::vector<ValuePtr> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<uint64_t, ValuePtr> memo_;
    std::vector<ValuePtr> arena_;
    std::unordered_set<const Value*> kept_;
    std::unordered_map<const Value*, std::unordered_map<std::string, std::size_t>> dictIndex_;
    std::unordered_set<std::string> ignoredSeen_;
    uint64_t ops_ = 0;
    uint64_t items_ = 0;
    uint64_t memory_ = 0;
    int64_t storageBytes_ = 0;  ///< bytes of the distinct storages declared so far
    int64_t tensorBytes_ = 0;   ///< bytes of all tensors built so far, as if materialised
};

struct ZipEntry {
    std::string name;
    uint64_t localOffset = 0;
    uint64_t size = 0;
    uint64_t dataOffset = 0;
    uint32_t crc = 0;
};

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kMaxZipEntries = 1u << 22;

// Position of the End Of Central Directory record, or npos.
std::size_t findEocd(const uint8_t* d, std::size_t n)
{
    if (n < 22)
        return std::string::npos;
    const std::size_t lowest = n - 22 > 0xffff ? n - 22 - 0xffff : 0;
    for (std::size_t pos = n - 22 + 1; pos-- > lowest;) {
        if (d[pos] == 'P' && rd32(d + pos) == kEocdSig && pos + 22 + rd16(d + pos + 20) <= n)
            return pos;
    }
    return std::string::npos;
}

std::vector<ZipEntry> readZipDirectory(const uint8_t* d, std::size_t, std::size_t eocd)
{
    uint64_t diskNumber = rd16(d + eocd + 4);
    uint64_t cdDisk = rd16(d + eocd + 6);
    uint64_t count = rd16(d + eocd + 10);
    uint64_t cdSize = rd32(d + eocd + 12);
    uint64_t cdOffset = rd32(d + eocd + 16);
    uint64_t cdLimit = eocd;
    if (eocd >= 20 && rd32(d + eocd - 20) == kZip64LocatorSig) {
        const uint64_t z = rd64(d + eocd - 20 + 8);
        if (z > eocd - 20 || eocd - 20 - z < 56 || rd32(d + z) != kZip64EocdSig)
            fail("the zip64 end of central directory record is damaged or missing (truncated file?)");
        diskNumber = rd32(d + z + 16);
        cdDisk = rd32(d + z + 20);
        count = rd64(d + z + 32);
        cdSize = rd64(d + z + 40);
        cdOffset = rd64(d + z + 48);
        cdLimit = z;
    } else if (count == 0xffff || cdSize == 0xffffffffu || cdOffset == 0xffffffffu) {
        fail("the zip archive lacks its zip64 end of central directory locator (truncated file?)");
    }
    if (diskNumber != 0 || cdDisk != 0)
        fail("multi-part zip archives are not supported");
    if (cdOffset > cdLimit || cdSize > cdLimit - cdOffset)
        fail("the zip central directory lies outside the file (truncated or damaged file?)");
    if (count > cdSize / 46 || count > kMaxZipEntries)
        fail("the zip central directory claims " + std::to_string(count) + " entries, more than it can hold");

    std::vector<ZipEntry> entries;
    entries.reserve(static_cast<std::size_t>(count));
    std::unordered_set<std::string> names;
    const uint8_t* p = d + cdOffset;
    const uint8_t* end = d + cdOffset + cdSize;
    for (uint64_t i = 0; i < count; ++i) {
        if (end - p < 46 || rd32(p) != kCentralSig)
            fail("the zip central directory is damaged (entry " + std::to_string(i) + ")");
        const uint16_t flags = rd16(p + 8);
        const uint16_t method = rd16(p + 10);
        ZipEntry e;
        e.crc = rd32(p + 16);
        uint64_t compressed = rd32(p + 20);
        e.size = rd32(p + 24);
        const std::size_t nameLen = rd16(p + 28), extraLen = rd16(p + 30), commentLen = rd16(p + 32);
        e.localOffset = rd32(p + 42);
        if (static_cast<std::size_t>(end - p) - 46 < nameLen + extraLen + commentLen)
            fail("the zip central directory is damaged (entry " + std::to_string(i) + ")");
        e.name.assign(reinterpret_cast<const char*>(p + 46), nameLen);
        if (e.name.find('\0') != std::string::npos)
            fail("zip entry name with a NUL character");

        // ZIP64 extra field: 64-bit values for the fields saturated at 0xffffffff, in this order.
        const uint8_t* x = p + 46 + nameLen;
        const uint8_t* xEnd = x + extraLen;
        while (xEnd - x >= 4) {
            const uint16_t id = rd16(x);
            const std::size_t len = rd16(x + 2);
            if (static_cast<std::size_t>(xEnd - x) - 4 < len)
                break;
            if (id == 0x0001) {
                const uint8_t* f = x + 4;
                std::size_t left = len;
                for (uint64_t* field : {&e.size, &compressed, &e.localOffset}) {
                    if (*field != 0xffffffffu)
                        continue;
                    if (left < 8)
                        fail("zip entry " + quotedText(e.name) + " has a damaged zip64 extra field");
                    *field = rd64(f);
                    f += 8;
                    left -= 8;
                }
            }
            x += 4 + len;
        }
        if (flags & 0x0001)
            fail("encrypted zip entries are not supported (entry " + e.name + ")");
        if (method != 0)
            fail("compressed zip entries are not supported (entry " + e.name + ")");
        if (compressed != e.size)
            fail("zip entry " + quotedText(e.name) + " is stored but its sizes differ");
        if (e.localOffset > cdOffset || cdOffset - e.localOffset < 30 || rd32(d + e.localOffset) != kLocalSig)
            fail("zip entry " + quotedText(e.name) + " has no valid local header (truncated or damaged file?)");
        const uint8_t* l = d + e.localOffset;
        const std::size_t lNameLen = rd16(l + 26), lExtraLen = rd16(l + 28);
        e.dataOffset = e.localOffset + 30 + lNameLen + lExtraLen;
        if (e.dataOffset > cdOffset || e.size > cdOffset - e.dataOffset)
            fail("zip entry " + quotedText(e.name) + " lies outside the file (truncated or damaged file?)");
        if (lNameLen != nameLen || std::memcmp(l + 30, e.name.data(), nameLen) != 0)
            fail("zip entry " + quotedText(e.name) + " has a different name in its local header");
        if (!names.insert(e.name).second)
            fail("duplicate zip entry " + quotedText(e.name));
        entries.push_back(std::move(e));
        p += 46 + nameLen + extraLen + commentLen;
    }

    std::vector<const ZipEntry*> byOffset;
    for (const auto& e : entries)
        byOffset.push_back(&e);
    std::sort(byOffset.begin(), byOffset.end(),
              [](const ZipEntry* a, const ZipEntry* b) { return a->localOffset < b->localOffset; });
    for (std::size_t k = 1; k < byOffset.size(); ++k)
        if (byOffset[k - 1]->dataOffset + byOffset[k - 1]->size > byOffset[k]->localOffset)
            fail("zip entries " + quotedText(byOffset[k - 1]->name) + " and " + quotedText(byOffset[k]->name) +
                 " overlap");
    return entries;
}

// PyTorch can be told not to compute CRC-32s (it then stores 0), so 0 is not checked.
void checkCrc(const uint8_t* d, const ZipEntry& e)
{
    if (e.crc != 0 && crc32(d + e.dataOffset, static_cast<std::size_t>(e.size)) != e.crc)
        fail("zip entry " + quotedText(e.name) + " is corrupted (CRC-32 mismatch)");
}

Archive readZipCheckpoint(const uint8_t* d, std::size_t n, std::size_t eocd, const Limits& limits)
{
    const auto entries = readZipDirectory(d, n, eocd);
    if (entries.empty())
        fail("the zip archive is empty (not a torch.save checkpoint)");
    const auto slash = entries[0].name.find('/');
    if (slash == std::string::npos || slash == 0)
        fail("zip entry " + quotedText(entries[0].name) + " is not inside a top folder (not a torch.save checkpoint)");
    Archive archive;
    archive.format = ContainerFormat::Zip;
    archive.zipRoot = entries[0].name.substr(0, slash);
    const std::string prefix = archive.zipRoot + "/";
    std::unordered_map<std::string, const ZipEntry*> byName;
    for (const auto& e : entries) {
        if (e.name.compare(0, prefix.size(), prefix) != 0)
            fail("zip entries are not all inside one top folder (" + quotedText(entries[0].name) + ", " +
                 quotedText(e.name) + ")");
        byName.emplace(e.name.substr(prefix.size()), &e);
    }

    if (auto it = byName.find("byteorder"); it != byName.end()) {
        const ZipEntry& e = *it->second;
        std::string order(reinterpret_cast<const char*>(d + e.dataOffset),
                          static_cast<std::size_t>(std::min<uint64_t>(e.size, 16)));
        while (!order.empty() && std::isspace(static_cast<unsigned char>(order.back())))
            order.pop_back();
        if (order == "big")
            fail("big-endian checkpoints are not supported");
        if (order != "little")
            fail("unknown byte order " + quotedText(order) + " in the zip archive");
    }

    auto pkl = byName.find("data.pkl");
    if (pkl == byName.end())
        fail("the zip archive has no data.pkl (not a torch.save checkpoint)");
    const ZipEntry& pe = *pkl->second;
    checkCrc(d, pe);
    archive.root = unpickle(d + pe.dataOffset, static_cast<std::size_t>(pe.size), &archive.storages,
                            &archive.ignoredGlobals, limits);

    for (auto& [key, storage] : archive.storages) {
        auto it = byName.find("data/" + key);
        if (it == byName.end())
            fail("storage '" + key + "' used by data.pkl is missing from the zip archive");
        const ZipEntry& e = *it->second;
        const uint64_t expected = static_cast<uint64_t>(storage.numel) * dtypeSize(storage.dtype);
        if (e.size != expected)
            fail("storage '" + key + "' holds " + std::to_string(e.size) + " bytes, expected " +
                 std::to_string(expected) + " (" + std::to_string(storage.numel) + " x " + dtypeName(storage.dtype) +
                 ")");
        checkCrc(d, e);
        storage.bytes.assign(d + e.dataOffset, d + e.dataOffset + e.size);
    }
    return archive;
}

const uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool isLegacyMagic(const Value& v)
{
    return v.kind == Value::Kind::Object && v.module == "builtins" && v.name == "int" &&
           v.s == std::string(reinterpret_cast<const char*>(kLegacyMagic), sizeof kLegacyMagic);
}

Archive readLegacyCheckpoint(const uint8_t* d, std::size_t n, std::size_t pos, const Limits& limits)
{
    Archive archive;
    archive.format = ContainerFormat::Legacy;
    std::size_t used = 0;
    std::map<std::string, Storage> noStorages;
    std::vector<std::string> noGlobals;

    auto version = unpickle(d + pos, n - pos, &noStorages, &noGlobals, limits, &used);
    pos += used;
    if (version->kind != Value::Kind::Int || version->i != 1001)
        fail("unsupported legacy checkpoint protocol version " + version->describe());

    auto sysInfo = unpickle(d + pos, n - pos, &noStorages, &noGlobals, limits, &used);
    pos += used;
    if (sysInfo->kind != Value::Kind::Dict)
        fail("malformed legacy checkpoint (system information is " + sysInfo->describe() + ")");
    if (auto little = sysInfo->get("little_endian"); little && little->kind == Value::Kind::Bool && !little->b)
        fail("big-endian legacy checkpoints are not supported");
    if (!noStorages.empty())
        fail("malformed legacy checkpoint (storages in its header)");

    archive.root = unpickle(d + pos, n - pos, &archive.storages, &archive.ignoredGlobals, limits, &used);
    pos += used;

    auto keys = unpickle(d + pos, n - pos, &noStorages, &noGlobals, limits, &used);
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
        case Value::Kind::None: out_.push_back(op::NONE); return;
        case Value::Kind::Bool: out_.push_back(v.b ? op::NEWTRUE : op::NEWFALSE); return;
        case Value::Kind::Int: integer(v.i); return;
        case Value::Kind::Float: {
            uint64_t bits;
            std::memcpy(&bits, &v.f, sizeof bits);
            out_.push_back(op::BINFLOAT);
            for (int k = 7; k >= 0; --k)
                out_.push_back(static_cast<uint8_t>(bits >> (8 * k)));
            return;
        }
        case Value::Kind::String: string(v.s); return;
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
        case Value::Kind::Global: refuse("the global " + v.module + "." + v.name + " cannot be written");
        case Value::Kind::Object: refuse("objects such as " + v.describe() + " cannot be written");
        }
        refuse("unknown value kind");
    }

    const std::map<std::string, Storage>& storages_;
    std::map<std::string, const Storage*> used_;
    std::map<std::string, uint32_t> globals_;
    std::vector<uint8_t> out_;
};

struct ZipRecord {
    std::string name;
    const uint8_t* data;
    uint64_t size;
    uint32_t crc = 0;
    uint64_t offset = 0;
};

std::vector<uint8_t> writeZip(std::vector<ZipRecord>& records, bool forceZip64)
{
    constexpr uint64_t kMax32 = 0xffffffffu;
    constexpr uint16_t kDosDate = 0x21;  // 1980-01-01
    uint64_t total = 0;
    for (const auto& r : records)
        total += r.size + r.name.size() + 200;
    std::vector<uint8_t> out;
    out.reserve(static_cast<std::size_t>(total + 1024));

    for (auto& r : records) {
        r.offset = out.size();
        r.crc = crc32(r.data, static_cast<std::size_t>(r.size));
        const bool zip64 = forceZip64 || r.size >= kMax32 || r.offset >= kMax32;
        put32(out, kLocalSig);
        put16(out, zip64 ? 45 : 20);
        put16(out, 0);
        put16(out, 0);
        put16(out, 0);
        put16(out, kDosDate);
        put32(out, r.crc);
        put32(out, zip64 ? kMax32 : r.size);
        put32(out, zip64 ? kMax32 : r.size);
        put16(out, r.name.size());
        // Data starts 64-byte aligned, padded with an "FB" extra field as PyTorch does.
        const uint64_t headerEnd = r.offset + 30 + r.name.size() + (zip64 ? 20 : 0) + 4;
        const uint64_t pad = (64 - headerEnd % 64) % 64;
        put16(out, (zip64 ? 20 : 0) + 4 + pad);
        out.insert(out.end(), r.name.begin(), r.name.end());
        if (zip64) {
            put16(out, 0x0001);
            put16(out, 16);
            put64(out, r.size);
            put64(out, r.size);
        }
        put16(out, 0x4246);
        put16(out, pad);
        out.insert(out.end(), static_cast<std::size_t>(pad), 'Z');
        out.insert(out.end(), r.data, r.data + r.size);
    }

    const uint64_t cdOffset = out.size();
    for (const auto& r : records) {
        const bool size64 = forceZip64 || r.size >= kMax32;
        const bool offset64 = forceZip64 || r.offset >= kMax32;
        const uint16_t extraLen =
            (size64 || offset64) ? static_cast<uint16_t>(4 + (size64 ? 16 : 0) + (offset64 ? 8 : 0)) : 0;
        put32(out, kCentralSig);
        put16(out, 0x0300 | 45);  // made by: Unix, spec 4.5
        put16(out, extraLen ? 45 : 20);
        put16(out, 0);
        put16(out, 0);
        put16(out, 0);
        put16(out, kDosDate);
        put32(out, r.crc);
        put32(out, size64 ? kMax32 : r.size);
        put32(out, size64 ? kMax32 : r.size);
        put16(out, r.name.size());
        put16(out, extraLen);
        put16(out, 0);
        put16(out, 0);
        put16(out, 0);
        put32(out, 0644u << 16);
        put32(out, offset64 ? kMax32 : r.offset);
        out.insert(out.end(), r.name.begin(), r.name.end());
        if (extraLen) {
            put16(out, 0x0001);
            put16(out, extraLen - 4);
            if (size64) {
                put64(out, r.size);
                put64(out, r.size);
            }
            if (offset64)
                put64(out, r.offset);
        }
    }
    const uint64_t cdSize = out.size() - cdOffset;
    const uint64_t count = records.size();
    const bool zip64 = forceZip64 || count >= 0xffff || cdOffset >= kMax32 || cdSize >= kMax32;
    if (zip64) {
        const uint64_t z = out.size();
        put32(out, kZip64EocdSig);
        put64(out, 44);
        put16(out, 0x0300 | 45);
        put16(out, 45);
        put32(out, 0);
        put32(out, 0);
        put64(out, count);
        put64(out, count);
        put64(out, cdSize);
        put64(out, cdOffset);
        put32(out, kZip64LocatorSig);
        put32(out, 0);
        put64(out, z);
        put32(out, 1);
    }
    put32(out, kEocdSig);
    put16(out, 0);
    put16(out, 0);
    put16(out, zip64 ? 0xffff : count);
    put16(out, zip64 ? 0xffff : count);
    put32(out, zip64 ? kMax32 : cdSize);
    put32(out, zip64 ? kMax32 : cdOffset);
    put16(out, 0);
    return out;
}

}  // namespace

std::size_t dtypeSize(DType dtype)
{
    switch (dtype) {
    case DType::Float64:
    case DType::Int64: return 8;
    case DType::Float32:
    case DType::Int32: return 4;
    case DType::Float16:
    case DType::BFloat16:
    case DType::Int16: return 2;
    case DType::Int8:
    case DType::UInt8:
    case DType::Bool: return 1;
    }
    return 1;
}

std::string storageClassName(DType dtype)
{
    switch (dtype) {
    case DType::Float32: return "FloatStorage";
    case DType::Float64: return "DoubleStorage";
    case DType::Float16: return "HalfStorage";
    case DType::BFloat16: return "BFloat16Storage";
    case DType::Int64: return "LongStorage";
    case DType::Int32: return "IntStorage";
    case DType::Int16: return "ShortStorage";
    case DType::Int8: return "CharStorage";
    case DType::UInt8: return "ByteStorage";
    case DType::Bool: return "BoolStorage";
    }
    return "ByteStorage";
}

std::string dtypeName(DType dtype)
{
    switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::Int16: return "int16";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
    }
    return "unknown";
}

ValuePtr Value::none()
{
    return std::make_shared<Value>();
}

ValuePtr Value::boolean(bool v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Bool;
    p->b = v;
    return p;
}

ValuePtr Value::integer(int64_t v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Int;
    p->i = v;
    return p;
}

ValuePtr Value::real(double v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Float;
    p->f = v;
    return p;
}

ValuePtr Value::string(std::string v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::String;
    p->s = std::move(v);
    return p;
}

ValuePtr Value::list(std::vector<ValuePtr> v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::List;
    p->items = std::move(v);
    return p;
}

ValuePtr Value::tuple(std::vector<ValuePtr> v)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Tuple;
    p->items = std::move(v);
    return p;
}

ValuePtr Value::dictionary(bool ordered)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Dict;
    p->ordered = ordered;
    return p;
}

ValuePtr Value::tensorRef(TensorRef t)
{
    auto p = std::make_shared<Value>();
    p->kind = Kind::Tensor;
    p->tensor = std::move(t);
    return p;
}

bool Value::isStringKeyedDict() const
{
    if (kind != Kind::Dict)
        return false;
    for (const auto& [k, v] : dict)
        if (!k || k->kind != Kind::String)
            return false;
    return true;
}

ValuePtr Value::get(const std::string& key) const
{
    if (kind != Kind::Dict)
        return nullptr;
    for (const auto& [k, v] : dict)
        if (k && k->kind == Kind::String && k->s == key)
            return v;
    return nullptr;
}

void Value::set(const std::string& key, ValuePtr v)
{
    for (auto& [k, old] : dict)
        if (k && k->kind == Kind::String && k->s == key) {
            old = std::move(v);
            return;
        }
    dict.emplace_back(string(key), std::move(v));
}

std::string Value::describe() const
{
    switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return b ? "bool True" : "bool False";
    case Kind::Int: return "int " + std::to_string(i);
    case Kind::Float: return "float " + formatDouble(f);
    case Kind::String: return "str " + quotedText(s, 40);
    case Kind::Bytes: return "bytes (" + std::to_string(s.size()) + " bytes)";
    case Kind::List: return "list (" + std::to_string(items.size()) + (items.size() == 1 ? " item)" : " items)");
    case Kind::Tuple: return "tuple (" + std::to_string(items.size()) + (items.size() == 1 ? " item)" : " items)");
    case Kind::Dict:
        return std::string(ordered ? "OrderedDict" : "dict") + " (" + std::to_string(dict.size()) +
               (dict.size() == 1 ? " entry)" : " entries)");
    case Kind::Tensor: {
        std::string shape = "[";
        for (std::size_t k = 0; k < tensor.sizes.size(); ++k)
            shape += (k ? ", " : "") + std::to_string(tensor.sizes[k]);
        shape += "]";
        return std::string(module.empty() ? "tensor " : "storage ") + dtypeName(tensor.dtype) + " " + shape;
    }
    case Kind::Global: return "global " + module + "." + name;
    case Kind::Object:
        if (module == "builtins" && name == "int")
            return "int (" + std::to_string(s.size() * 8) + "-bit)";
        return module + "." + name;
    }
    return "?";
}

ValuePtr unpickle(const uint8_t* data, std::size_t size, std::map<std::string, Storage>* storages,
                  std::vector<std::string>* ignoredGlobals, const Limits& limits, std::size_t* consumed)
{
    std::map<std::string, Storage> localStorages;
    std::vector<std::string> localIgnored;
    Unpickler unpickler(data, size, storages ? *storages : localStorages,
                        ignoredGlobals ? *ignoredGlobals : localIgnored, limits);
    return unpickler.run(consumed);
}

Archive readTorchFile(const std::vector<uint8_t>& data, const Limits& limits)
{
    const uint8_t* d = data.data();
    const std::size_t n = data.size();
    if (n > limits.maxFileBytes)
        fail("the file is larger than the limit of " + std::to_string(limits.maxFileBytes) + " bytes");
    if (n == 0)
        fail("not a PyTorch checkpoint (the file is empty)");

    const std::size_t eocd = findEocd(d, n);
    if (eocd != std::string::npos)
        return readZipCheckpoint(d, n, eocd, limits);
    static const uint8_t zipStart[4] = {'P', 'K', 3, 4};
    if (std::memcmp(d, zipStart, std::min<std::size_t>(n, 4)) == 0)
        fail("the zip archive is truncated or damaged (no end of central directory record)");
    if (n >= 262 && std::memcmp(d + 257, "ustar", 5) == 0)
        fail("legacy tar checkpoints (PyTorch < 0.4) are not supported");

    // Legacy format: the first pickle is the magic number.
    bool legacy = false;
    std::size_t used = 0;
    if (d[0] == 0x80) {
        try {
            std::map<std::string, Storage> noStorages;
            std::vector<std::string> noGlobals;
            Limits small = limits;
            small.maxPickleOps = std::min<uint64_t>(small.maxPickleOps, 64);
            legacy = isLegacyMagic(*unpickle(d, n, &noStorages, &noGlobals, small, &used));
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
        fail("not a PyTorch checkpoint (no zip directory and no legacy pickle header)");
    }
    return readLegacyCheckpoint(d, n, used, limits);
}

Archive readTorchFile(const std::string& path, const Limits& limits)
{
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > limits.maxFileBytes)
        fail("the file is larger than the limit of " + std::to_string(limits.maxFileBytes) + " bytes");
    return readTorchFile(readFileBytes(path, limits.maxFileBytes), limits);
}

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
