// What the pieces of the torch.save reader and writer share: byte helpers, opcodes, zip entry points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fec/pickle.h"

namespace fec::pickle::detail {

[[noreturn]] inline void fail(const std::string& message)
{
    throw FormatError(message);
}

inline uint16_t rd16(const uint8_t* p)
{
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

inline uint32_t rd32(const uint8_t* p)
{
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}

inline uint64_t rd64(const uint8_t* p)
{
    return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}

inline void put16(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 2; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

inline void put32(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

inline void put64(std::vector<uint8_t>& out, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

inline bool checkedMul(int64_t a, int64_t b, int64_t& out)
{
    return !__builtin_mul_overflow(a, b, &out);
}

inline bool checkedAdd(int64_t a, int64_t b, int64_t& out)
{
    return !__builtin_add_overflow(a, b, &out);
}

// Quoted, shortened (at a UTF-8 character boundary) and escaped text for messages.
std::string quotedText(const std::string& s, std::size_t max = 60);
// Python's repr() of a float: shortest round-tripping digits, exponent only when < -4 or >= 16.
std::string formatDouble(double v);
// UTF-8 as Python's decoder with "surrogatepass" accepts it (what pickle uses for strings).
bool validUtf8(const std::string& s);
void appendUtf8(std::string& out, uint32_t cp);

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

// Position of the End Of Central Directory record, or npos.
std::size_t findEocd(const uint8_t* d, std::size_t n);
// Reads a zip checkpoint whose End Of Central Directory record is at `eocd`.
Archive readZipCheckpoint(const uint8_t* d, std::size_t n, std::size_t eocd, const Limits& limits);

// One entry of a zip to write; writeZip fills in crc and offset.
struct ZipRecord {
    std::string name;
    const uint8_t* data;
    uint64_t size;
    uint32_t crc = 0;
    uint64_t offset = 0;
};

// Stored entries, data 64-byte aligned as PyTorch writes them; ZIP64 records where needed (or forced).
std::vector<uint8_t> writeZip(std::vector<ZipRecord>& records, bool forceZip64);

}  // namespace fec::pickle::detail
