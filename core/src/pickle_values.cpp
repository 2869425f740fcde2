// Value, DType and the text helpers (quoting, Python float repr, UTF-8) of the pickle reader and writer.
#include "fec/pickle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "pickle_internal.h"

namespace fec::pickle::detail {

std::string quotedText(const std::string& s, std::size_t max)
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

}  // namespace fec::pickle::detail

namespace fec::pickle {

using namespace detail;

std::size_t dtypeSize(DType dtype)
{
    switch (dtype) {
    case DType::Float64:
    case DType::Int64:
        return 8;
    case DType::Float32:
    case DType::Int32:
        return 4;
    case DType::Float16:
    case DType::BFloat16:
    case DType::Int16:
        return 2;
    case DType::Int8:
    case DType::UInt8:
    case DType::Bool:
        return 1;
    }
    return 1;
}

std::string storageClassName(DType dtype)
{
    switch (dtype) {
    case DType::Float32:
        return "FloatStorage";
    case DType::Float64:
        return "DoubleStorage";
    case DType::Float16:
        return "HalfStorage";
    case DType::BFloat16:
        return "BFloat16Storage";
    case DType::Int64:
        return "LongStorage";
    case DType::Int32:
        return "IntStorage";
    case DType::Int16:
        return "ShortStorage";
    case DType::Int8:
        return "CharStorage";
    case DType::UInt8:
        return "ByteStorage";
    case DType::Bool:
        return "BoolStorage";
    }
    return "ByteStorage";
}

std::string dtypeName(DType dtype)
{
    switch (dtype) {
    case DType::Float32:
        return "float32";
    case DType::Float64:
        return "float64";
    case DType::Float16:
        return "float16";
    case DType::BFloat16:
        return "bfloat16";
    case DType::Int64:
        return "int64";
    case DType::Int32:
        return "int32";
    case DType::Int16:
        return "int16";
    case DType::Int8:
        return "int8";
    case DType::UInt8:
        return "uint8";
    case DType::Bool:
        return "bool";
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

bool Value::isNestedPickle() const
{
    return kind == Kind::Object && module == "torch.storage" && name == "_load_from_bytes";
}

std::string Value::describe() const
{
    switch (kind) {
    case Kind::None:
        return "None";
    case Kind::Bool:
        return b ? "bool True" : "bool False";
    case Kind::Int:
        return "int " + std::to_string(i);
    case Kind::Float:
        return "float " + formatDouble(f);
    case Kind::String:
        return "str " + quotedText(s, 40);
    case Kind::Bytes:
        return "bytes (" + std::to_string(s.size()) + " bytes)";
    case Kind::List:
        return "list (" + std::to_string(items.size()) + (items.size() == 1 ? " item)" : " items)");
    case Kind::Tuple:
        return "tuple (" + std::to_string(items.size()) + (items.size() == 1 ? " item)" : " items)");
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
    case Kind::Global:
        return "global " + module + "." + name;
    case Kind::Object:
        if (module == "builtins" && name == "int")
            return "int (" + std::to_string(s.size() * 8) + "-bit)";
        if (isNestedPickle())
            return "a nested pickle (torch.storage._load_from_bytes), not loaded";
        return module + "." + name;
    }
    return "?";
}

}  // namespace fec::pickle
