#include "fec/train/tfevents.h"

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <unistd.h>

namespace fs = std::filesystem;

namespace fec::train {

namespace {

const std::array<uint32_t, 256>& crcTable()
{
    static const auto table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli polynomial
            t[i] = c;
        }
        return t;
    }();
    return table;
}

void putVarint(std::string& out, uint64_t v)
{
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

void putTag(std::string& out, int field, int wireType)
{
    putVarint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wireType));
}

void putBytes(std::string& out, int field, const std::string& bytes)
{
    putTag(out, field, 2);
    putVarint(out, bytes.size());
    out += bytes;
}

template <typename T> void putFixed(std::string& out, T value)
{
    char buf[sizeof(T)];
    std::memcpy(buf, &value, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
    out.append(buf, sizeof(T));
}

struct Reader {
    const std::string& data;
    size_t pos = 0;

    bool done() const { return pos >= data.size(); }
    uint64_t varint()
    {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos >= data.size())
                throw std::runtime_error("truncated varint");
            const auto b = static_cast<uint8_t>(data[pos++]);
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80))
                return v;
        }
        throw std::runtime_error("varint too long");
    }
    template <typename T> T fixed()
    {
        if (pos + sizeof(T) > data.size())
            throw std::runtime_error("truncated fixed-width field");
        T v;
        std::memcpy(&v, data.data() + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string bytes()
    {
        const auto n = varint();
        if (n > data.size() - pos)
            throw std::runtime_error("truncated length-delimited field");
        std::string s = data.substr(pos, n);
        pos += n;
        return s;
    }
    void skip(int wireType)
    {
        switch (wireType) {
        case 0:
            varint();
            break;
        case 1:
            fixed<uint64_t>();
            break;
        case 2:
            bytes();
            break;
        case 5:
            fixed<uint32_t>();
            break;
        default:
            throw std::runtime_error("unsupported wire type " + std::to_string(wireType));
        }
    }
};

std::string hostName()
{
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0])
        return "localhost";
    return buf;
}

double nowSeconds()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t size, uint32_t crc)
{
    const auto& table = crcTable();
    const auto* p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < size; ++i)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t maskCrc(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string encodeEvent(const TfEvent& event)
{
    std::string out;
    putTag(out, 1, 1);
    putFixed<double>(out, event.wallTime);
    putTag(out, 2, 0);
    putVarint(out, static_cast<uint64_t>(event.step));
    if (!event.fileVersion.empty())
        putBytes(out, 3, event.fileVersion);
    if (!event.scalars.empty()) {
        std::string summary;
        for (const auto& [tag, value] : event.scalars) {
            std::string v;
            putBytes(v, 1, tag);
            putTag(v, 2, 5);
            putFixed<float>(v, value);
            putBytes(summary, 1, v);
        }
        putBytes(out, 5, summary);
    }
    return out;
}

TfEvent decodeEvent(const std::string& bytes)
{
    TfEvent event;
    Reader r{bytes};
    while (!r.done()) {
        const auto key = r.varint();
        const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
        if (field == 1 && wire == 1) {
            event.wallTime = r.fixed<double>();
        } else if (field == 2 && wire == 0) {
            event.step = static_cast<int64_t>(r.varint());
        } else if (field == 3 && wire == 2) {
            event.fileVersion = r.bytes();
        } else if (field == 5 && wire == 2) {
            const auto summary = r.bytes();
            Reader s{summary};
            while (!s.done()) {
                const auto k = s.varint();
                if ((k >> 3) != 1 || (k & 7) != 2) {
                    s.skip(static_cast<int>(k & 7));
                    continue;
                }
                const auto value = s.bytes();
                Reader v{value};
                std::string tag;
                float simple = 0.0f;
                while (!v.done()) {
                    const auto vk = v.varint();
                    if ((vk >> 3) == 1 && (vk & 7) == 2)
                        tag = v.bytes();
                    else if ((vk >> 3) == 2 && (vk & 7) == 5)
                        simple = v.fixed<float>();
                    else
                        v.skip(static_cast<int>(vk & 7));
                }
                event.scalars.emplace_back(tag, simple);
            }
        } else {
            r.skip(wire);
        }
    }
    return event;
}

EventWriter::EventWriter(const std::string& directory)
{
    const auto seconds = static_cast<long long>(nowSeconds());
    m_path = (fs::path(directory) / ("events.out.tfevents." + std::to_string(seconds) + "." + hostName())).string();
    // Two writers started in the same second (a resume) must not share a file.
    for (int i = 1; fs::exists(m_path); ++i)
        m_path = (fs::path(directory) /
                  ("events.out.tfevents." + std::to_string(seconds) + "." + hostName() + "." + std::to_string(i)))
                     .string();
    m_out.open(m_path, std::ios::binary | std::ios::trunc);
    if (!m_out)
        throw std::runtime_error("cannot create " + m_path);
    TfEvent first;
    first.wallTime = nowSeconds();
    first.fileVersion = "brain.Event:2";
    record(encodeEvent(first));
    flush();
}

void EventWriter::write(int64_t step, const std::vector<std::pair<std::string, float>>& scalars, double wallTime)
{
    TfEvent event;
    event.wallTime = wallTime > 0 ? wallTime : nowSeconds();
    event.step = step;
    event.scalars = scalars;
    record(encodeEvent(event));
}

void EventWriter::flush()
{
    m_out.flush();
    if (!m_out)
        throw std::runtime_error("cannot write " + m_path);
}

void EventWriter::record(const std::string& payload)
{
    std::string header;
    putFixed<uint64_t>(header, payload.size());
    std::string frame = header;
    putFixed<uint32_t>(frame, maskCrc(crc32c(header.data(), header.size())));
    frame += payload;
    putFixed<uint32_t>(frame, maskCrc(crc32c(payload.data(), payload.size())));
    m_out.write(frame.data(), static_cast<std::streamsize>(frame.size()));
}

std::vector<TfEvent> readEventFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<TfEvent> events;
    size_t pos = 0;
    for (int record = 0; pos < data.size(); ++record) {
        auto fail = [&](const std::string& why) {
            return std::runtime_error(path + ": record " + std::to_string(record) + " at byte " + std::to_string(pos) +
                                      ": " + why);
        };
        if (data.size() - pos < 12)
            throw fail("truncated header");
        uint64_t length;
        uint32_t lengthCrc;
        std::memcpy(&length, data.data() + pos, 8);
        std::memcpy(&lengthCrc, data.data() + pos + 8, 4);
        if (maskCrc(crc32c(data.data() + pos, 8)) != lengthCrc)
            throw fail("length CRC mismatch");
        if (length > data.size() - pos - 12 || data.size() - pos - 12 - length < 4)
            throw fail("truncated payload");
        const std::string payload = data.substr(pos + 12, length);
        uint32_t payloadCrc;
        std::memcpy(&payloadCrc, data.data() + pos + 12 + length, 4);
        if (maskCrc(crc32c(payload.data(), payload.size())) != payloadCrc)
            throw fail("payload CRC mismatch");
        try {
            events.push_back(decodeEvent(payload));
        } catch (const std::exception& e) {
            throw fail(std::string("malformed Event: ") + e.what());
        }
        pos += 12 + length + 4;
    }
    return events;
}

}  // namespace fec::train
