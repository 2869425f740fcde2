// The zip container of torch.save files: reading (offsets, sizes, CRC-32 validated) and writing.
#include "fec/pickle.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <unordered_map>

#include "pickle_internal.h"

namespace fec::pickle::detail {

namespace {

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

}  // namespace

std::size_t findEocd(const uint8_t* d, std::size_t n)
{
    // PyTorch's zip reader (miniz) scans back from the end and takes the first signature with a
    // whole record after it, whatever its comment length says; so do we (readZipCheckpoint then
    // refuses a record that does not end the file).
    if (n < 22)
        return std::string::npos;
    const std::size_t lowest = n - 22 > 0xffff ? n - 22 - 0xffff : 0;
    for (std::size_t pos = n - 22 + 1; pos-- > lowest;) {
        if (d[pos] == 'P' && rd32(d + pos) == kEocdSig)
            return pos;
    }
    return std::string::npos;
}

namespace {

std::vector<ZipEntry> readZipDirectory(const uint8_t* d, std::size_t, std::size_t eocd)
{
    uint64_t diskNumber = rd16(d + eocd + 4);
    uint64_t cdDisk = rd16(d + eocd + 6);
    uint64_t countHere = rd16(d + eocd + 8);
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
        countHere = rd64(d + z + 24);
        count = rd64(d + z + 32);
        cdSize = rd64(d + z + 40);
        cdOffset = rd64(d + z + 48);
        cdLimit = z;
    } else if (count == 0xffff || cdSize == 0xffffffffu || cdOffset == 0xffffffffu) {
        fail("the zip archive lacks its zip64 end of central directory locator (truncated file?)");
    }
    if (diskNumber != 0 || cdDisk != 0)
        fail("multi-part zip archives are not supported");
    if (countHere != count)
        fail("the zip end of central directory record counts " + std::to_string(countHere) +
             " entries on this disk but " + std::to_string(count) + " in all (PyTorch refuses such archives)");
    if (cdOffset > cdLimit || cdSize > cdLimit - cdOffset)
        fail("the zip central directory lies outside the file (truncated or damaged file?)");
    if (count > cdSize / 46 || count > kMaxZipEntries)
        fail("the zip central directory claims " + std::to_string(count) + " entries, more than it can hold");

    std::vector<ZipEntry> entries;
    entries.reserve(static_cast<std::size_t>(count));
    std::unordered_map<std::string, std::string> names;  // case-folded name -> name
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
        // PyTorch looks entries up ignoring ASCII case: names that differ only in case are as
        // ambiguous as duplicates.
        std::string folded = e.name;
        std::transform(folded.begin(), folded.end(), folded.begin(),
                       [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
        if (const auto [it, fresh] = names.emplace(folded, e.name); !fresh)
            fail(it->second == e.name ? "duplicate zip entry " + quotedText(e.name)
                                      : "zip entries " + quotedText(it->second) + " and " + quotedText(e.name) +
                                            " differ only in case (PyTorch does not tell them apart)");
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

}  // namespace

Archive readZipCheckpoint(const uint8_t* d, std::size_t n, std::size_t eocd, const Limits& limits)
{
    // Readers differ on a record whose comment stops short of the end or runs past it (a second
    // record may hide behind it): refuse instead of guessing.
    const std::size_t commentLen = rd16(d + eocd + 20);
    if (n - eocd - 22 != commentLen)
        fail("the zip archive's end of central directory record (offset " + std::to_string(eocd) + ") says " +
             std::to_string(commentLen) + " comment bytes follow it, but " + std::to_string(n - eocd - 22) +
             " do: damaged or ambiguous zip, not read");
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

}  // namespace fec::pickle::detail
