// The restricted unpickler: protocol 0-5 opcodes, stack, memo, limits and the final result check.
#include "pickle_unpickler.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "pickle_internal.h"

namespace fec::pickle::detail {

namespace {

// Names of the opcodes refused on purpose (extension registry, old-style instances, buffers).
const char* unsupportedOpcodeName(uint8_t code)
{
    switch (code) {
    case op::INST:
        return "INST";
    case op::OBJ:
        return "OBJ";
    case op::EXT1:
        return "EXT1";
    case op::EXT2:
        return "EXT2";
    case op::EXT4:
        return "EXT4";
    case op::NEXT_BUFFER:
        return "NEXT_BUFFER";
    case op::READONLY_BUFFER:
        return "READONLY_BUFFER";
    default:
        return nullptr;
    }
}

}  // namespace

// Values are shared pointers that may form arbitrarily deep chains or cycles; cut every link
// of what is not handed out so that nothing is destroyed recursively or leaked.
Unpickler::~Unpickler()
{
    for (auto& v : arena_) {
        if (kept_.count(v.get()))
            continue;
        v->items.clear();
        v->dict.clear();
        v->state.reset();
    }
}

ValuePtr Unpickler::run(std::size_t* consumed)
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

void Unpickler::truncated() const
{
    fail("the pickle data is truncated (it ends inside the opcode" + where() + ")");
}

const uint8_t* Unpickler::take(std::size_t n)
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

std::string Unpickler::takeString(uint64_t n)
{
    if (n > size_ - pos_)
        truncated();
    charge(n);
    return std::string(reinterpret_cast<const char*>(take(static_cast<std::size_t>(n))), static_cast<std::size_t>(n));
}

std::string Unpickler::readLine(std::size_t maxLen)
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
void Unpickler::spend(uint64_t steps)
{
    ops_ += steps;
    if (ops_ > limits_.maxPickleOps)
        fail("the pickle needs more than " + std::to_string(limits_.maxPickleOps) + " operations" + where());
}

void Unpickler::charge(uint64_t bytes)
{
    memory_ += bytes;
    if (memory_ > limits_.maxPickleMemory)
        fail("the pickle needs more than " + std::to_string(limits_.maxPickleMemory >> 20) + " MiB of memory (limit)" +
             where());
}

void Unpickler::countItems(uint64_t n)
{
    items_ += n;
    if (items_ > limits_.maxContainerItems)
        fail("the pickle holds more than " + std::to_string(limits_.maxContainerItems) + " container items");
    charge(n * sizeof(ValuePtr));
}

ValuePtr Unpickler::make(Value::Kind kind)
{
    charge(sizeof(Value) + 48);
    auto v = std::make_shared<Value>();
    v->kind = kind;
    arena_.push_back(v);
    return v;
}

ValuePtr Unpickler::makeInt(int64_t i)
{
    auto v = make(Value::Kind::Int);
    v->i = i;
    return v;
}

ValuePtr Unpickler::makeString(std::string s, bool checkUtf8)
{
    if (checkUtf8 && !validUtf8(s))
        fail("invalid UTF-8 in a string" + where());
    auto v = make(Value::Kind::String);
    v->s = std::move(s);
    return v;
}

ValuePtr Unpickler::makeBytes(std::string s)
{
    auto v = make(Value::Kind::Bytes);
    v->s = std::move(s);
    return v;
}

void Unpickler::push(ValuePtr v)
{
    if ((stack_.size() + 1) * sizeof(ValuePtr) + memory_ > limits_.maxPickleMemory)
        fail("the pickle stack grows beyond the memory limit" + where());
    stack_.push_back(std::move(v));
}

ValuePtr Unpickler::pop()
{
    if (stack_.size() <= frameBase())
        fail("pickle stack underflow" + where());
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
}

ValuePtr& Unpickler::top()
{
    if (stack_.size() <= frameBase())
        fail("pickle stack underflow" + where());
    return stack_.back();
}

std::vector<ValuePtr> Unpickler::popMark()
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

ValuePtr Unpickler::makeSequence(Value::Kind kind, std::vector<ValuePtr> items)
{
    auto v = make(kind);
    countItems(items.size());
    v->items = std::move(items);
    return v;
}

void Unpickler::memoPut(uint64_t index)
{
    ValuePtr v = top();
    auto [it, inserted] = memo_.try_emplace(index);
    if (inserted)
        charge(64);
    it->second = std::move(v);
}

void Unpickler::memoGet(uint64_t index)
{
    auto it = memo_.find(index);
    if (it == memo_.end())
        fail("the pickle refers to memo entry " + std::to_string(index) + " that was never stored" + where());
    push(it->second);
}

int64_t Unpickler::parseDecimal(const std::string& text, const char* what)
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

ValuePtr Unpickler::decodeLong(const uint8_t* p, std::size_t n)
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
std::string Unpickler::unescapeString(const std::string& line)
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
        case '\\':
            out += '\\';
            break;
        case '\'':
            out += '\'';
            break;
        case '"':
            out += '"';
            break;
        case 'a':
            out += '\a';
            break;
        case 'b':
            out += '\b';
            break;
        case 'f':
            out += '\f';
            break;
        case 'n':
            out += '\n';
            break;
        case 'r':
            out += '\r';
            break;
        case 't':
            out += '\t';
            break;
        case 'v':
            out += '\v';
            break;
        case '\n':
            break;
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
std::string Unpickler::rawUnicodeToUtf8(const std::string& line)
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

// Canonical text of a hashable key, so that SETITEM replaces equal keys as Python does.
bool Unpickler::canonicalKey(const Value& k, std::string& out, int depth)
{
    // Shared tuples nest exponentially when expanded; keys that large are not deduplicated.
    if (out.size() > 4096)
        return false;
    switch (k.kind) {
    case Value::Kind::None:
        out += "n;";
        return true;
    case Value::Kind::Bool:
        out += k.b ? "i1;" : "i0;";
        return true;
    case Value::Kind::Int:
        out += "i" + std::to_string(k.i) + ";";
        return true;
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
    case Value::Kind::Global:
        out += "g" + k.module + "." + k.name + ";";
        return true;
    case Value::Kind::Tuple:
        if (depth > 16 || k.items.size() > 64)
            return false;
        out += "t" + std::to_string(k.items.size()) + "(";
        for (const auto& item : k.items)
            if (out.size() > 4096 || !canonicalKey(*item, out, depth + 1))
                return false;
        out += ")";
        return true;
    default:
        return false;
    }
}

void Unpickler::dictSet(const ValuePtr& d, ValuePtr key, ValuePtr value)
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

ValuePtr& Unpickler::dictTarget()
{
    ValuePtr& d = top();
    if (d->kind != Value::Kind::Dict && d->kind != Value::Kind::Object)
        fail("SETITEM on " + d->describe() + where());
    return d;
}

void Unpickler::setItems(std::vector<ValuePtr> kv)
{
    if (kv.size() % 2)
        fail("odd number of items for a dictionary" + where());
    ValuePtr d = dictTarget();
    for (std::size_t k = 0; k < kv.size(); k += 2)
        dictSet(d, std::move(kv[k]), std::move(kv[k + 1]));
}

void Unpickler::appendItems(std::vector<ValuePtr> items)
{
    ValuePtr& l = top();
    if (l->kind != Value::Kind::List)
        fail("APPEND on " + l->describe() + where());
    countItems(items.size());
    for (auto& item : items)
        l->items.push_back(std::move(item));
}

void Unpickler::build()
{
    ValuePtr state = pop();
    ValuePtr& target = top();
    switch (target->kind) {
    case Value::Kind::Object:
        target->state = std::move(state);
        return;
    // OrderedDict attributes (state_dict()'s `_metadata`) and tensor subclass state are not needed.
    case Value::Kind::Dict:
    case Value::Kind::Tensor:
        return;
    default:
        fail("BUILD on " + target->describe() + where());
    }
}

// Returns true on STOP.
bool Unpickler::step(uint8_t code)
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
    case op::STOP:
        return true;
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
    case op::POP_MARK:
        popMark();
        return false;
    case op::DUP:
        push(top());
        return false;
    case op::NONE:
        push(make(Value::Kind::None));
        return false;
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
    case op::BININT:
        push(makeInt(static_cast<int32_t>(rd32(take(4)))));
        return false;
    case op::BININT1:
        push(makeInt(take(1)[0]));
        return false;
    case op::BININT2:
        push(makeInt(rd16(take(2))));
        return false;
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
    case op::UNICODE:
        push(makeString(rawUnicodeToUtf8(readLine(size_))));
        return false;
    case op::BINUNICODE:
        push(makeString(takeString(rd32(take(4)))));
        return false;
    case op::SHORT_BINUNICODE:
        push(makeString(takeString(take(1)[0])));
        return false;
    case op::BINUNICODE8:
        push(makeString(takeString(rd64(take(8)))));
        return false;
    case op::BINBYTES:
        push(makeBytes(takeString(rd32(take(4)))));
        return false;
    case op::SHORT_BINBYTES:
        push(makeBytes(takeString(take(1)[0])));
        return false;
    case op::BINBYTES8:
    case op::BYTEARRAY8:
        push(makeBytes(takeString(rd64(take(8)))));
        return false;
    case op::EMPTY_LIST:
        push(make(Value::Kind::List));
        return false;
    case op::EMPTY_SET:
        push(make(Value::Kind::List));
        return false;
    case op::EMPTY_TUPLE:
        push(make(Value::Kind::Tuple));
        return false;
    case op::EMPTY_DICT:
        push(make(Value::Kind::Dict));
        return false;
    case op::APPEND: {
        ValuePtr v = pop();
        appendItems({std::move(v)});
        return false;
    }
    case op::APPENDS:
        appendItems(popMark());
        return false;
    case op::ADDITEMS: {
        auto items = popMark();
        appendItems(std::move(items));
        return false;
    }
    case op::LIST:
        push(makeSequence(Value::Kind::List, popMark()));
        return false;
    case op::FROZENSET:
        push(makeSequence(Value::Kind::List, popMark()));
        return false;
    case op::TUPLE:
        push(makeSequence(Value::Kind::Tuple, popMark()));
        return false;
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
    case op::SETITEMS:
        setItems(popMark());
        return false;
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
    case op::BUILD:
        build();
        return false;
    case op::PUT:
        memoPut(static_cast<uint64_t>(parseDecimal(readLine(32), "memo index")));
        return false;
    case op::BINPUT:
        memoPut(take(1)[0]);
        return false;
    case op::LONG_BINPUT:
        memoPut(rd32(take(4)));
        return false;
    case op::MEMOIZE:
        memoPut(memo_.size());
        return false;
    case op::GET:
        memoGet(static_cast<uint64_t>(parseDecimal(readLine(32), "memo index")));
        return false;
    case op::BINGET:
        memoGet(take(1)[0]);
        return false;
    case op::LONG_BINGET:
        memoGet(rd32(take(4)));
        return false;
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
void Unpickler::checkResult(const ValuePtr& root)
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

}  // namespace fec::pickle::detail

namespace fec::pickle {

using namespace detail;

ValuePtr unpickle(const uint8_t* data, std::size_t size, std::map<std::string, Storage>* storages,
                  std::vector<std::string>* ignoredGlobals, const Limits& limits, std::size_t* consumed)
{
    std::map<std::string, Storage> localStorages;
    std::vector<std::string> localIgnored;
    Unpickler unpickler(data, size, storages ? *storages : localStorages,
                        ignoredGlobals ? *ignoredGlobals : localIgnored, limits);
    return unpickler.run(consumed);
}

}  // namespace fec::pickle
