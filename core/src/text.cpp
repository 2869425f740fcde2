#include "fec/text.h"

#include <cstdint>

namespace fec {

namespace {

const char kHex[] = "0123456789abcdef";

void appendByte(std::string& out, unsigned char byte)
{
    out += "\\x";
    out += kHex[byte >> 4];
    out += kHex[byte & 0xf];
}

void appendCodePoint(std::string& out, uint32_t cp)
{
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4)
        out += kHex[(cp >> shift) & 0xf];
}

// Length of the valid UTF-8 sequence at text[i] and its code point; 0 when the bytes there are not
// valid UTF-8 (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t decodeUtf8(std::string_view text, size_t i, uint32_t& cp)
{
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char b0 = byte(i);
    size_t length = 0;
    uint32_t min = 0;
    if (b0 < 0x80) {
        cp = b0;
        return 1;
    } else if ((b0 & 0xe0) == 0xc0) {
        length = 2, cp = b0 & 0x1f, min = 0x80;
    } else if ((b0 & 0xf0) == 0xe0) {
        length = 3, cp = b0 & 0x0f, min = 0x800;
    } else if ((b0 & 0xf8) == 0xf0) {
        length = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (i + length > text.size())
        return 0;
    for (size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return length;
}

// Code points that change how a terminal or a text view lays out or reads what follows.
bool isControl(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f ||
           cp == 0x061c;
}

}  // namespace

std::string printable(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        uint32_t cp = 0;
        const size_t length = decodeUtf8(text, i, cp);
        if (length == 0) {
            appendByte(out, static_cast<unsigned char>(text[i]));
            ++i;
            continue;
        }
        if (!isControl(cp)) {
            out.append(text.substr(i, length));
        } else if (cp == '\n') {
            out += "\\n";
        } else if (cp == '\t') {
            out += "\\t";
        } else if (cp == '\r') {
            out += "\\r";
        } else if (cp < 0x80) {
            appendByte(out, static_cast<unsigned char>(cp));
        } else {
            appendCodePoint(out, cp);
        }
        i += length;
    }
    return out;
}

std::string printableLines(std::string_view text)
{
    std::string out;
    for (size_t start = 0;;) {
        const size_t end = text.find('\n', start);
        out += printable(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos)
            return out;
        out += '\n';
        start = end + 1;
    }
}

std::string printablePath(const std::filesystem::path& path)
{
    return printable(path.string());
}

bool isPrintable(std::string_view text)
{
    return printable(text) == text;
}

}  // namespace fec
