#include "fec/imaging/image_decode.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include <opencv2/imgcodecs.hpp>

#include "fec/atomic_file.h"

namespace fec::imaging {

namespace {

constexpr int64_t kPillowLimit = 178'956'970;
constexpr int64_t kMaxJpegScans = 1000;

uint32_t be16(const uint8_t* p)
{
    return (uint32_t(p[0]) << 8) | p[1];
}

uint32_t be32(const uint8_t* p)
{
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

uint32_t le16(const uint8_t* p)
{
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8);
}

uint32_t le32(const uint8_t* p)
{
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

uint64_t be64(const uint8_t* p)
{
    return (uint64_t(be32(p)) << 32) | be32(p + 4);
}

uint64_t le64(const uint8_t* p)
{
    return uint64_t(le32(p)) | (uint64_t(le32(p + 4)) << 32);
}

bool startsWith(const uint8_t* d, std::size_t n, const char* magic, std::size_t len)
{
    return n >= len && std::memcmp(d, magic, len) == 0;
}

void probeJpeg(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    std::size_t pos = 2;
    bool sof = false;
    while (pos + 1 < n) {
        if (d[pos] != 0xff)
            return;  // damaged: a marker was expected
        while (pos + 1 < n && d[pos + 1] == 0xff)
            ++pos;  // fill bytes
        if (pos + 1 >= n)
            break;
        const uint8_t m = d[pos + 1];
        pos += 2;
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            continue;
        if (m == 0xd9 || m == 0xd8)
            return;
        if (pos + 2 > n)
            break;
        const std::size_t len = be16(d + pos);
        if (len < 2)
            return;
        const bool isSof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (isSof && !sof) {
            if (pos + 7 > n)
                break;
            h.height = be16(d + pos + 3);
            h.width = be16(d + pos + 5);
            if (h.height == 0)  // height defined later by a DNL marker: not supported
                h.height = h.width = -1;
            sof = true;
        }
        if (m == 0xda) {
            // Entropy-coded data follows; only the end-of-image marker can spell FF D9 in it.
            if (!sof)
                h.width = h.height = -1;
            const uint8_t eoi[2] = {0xff, 0xd9};
            const auto* end = d + n;
            h.truncated = std::search(d + std::min(n, pos + len), end, eoi, eoi + 2) == end;
            // Progressive files hold one scan per SOS marker; stuffing keeps FF DA out of the data.
            h.scans = 1;
            for (const uint8_t* p = d + pos; p + 1 < end; ++p)
                if (p[0] == 0xff && p[1] == 0xda)
                    ++h.scans;
            return;
        }
        pos += len;
    }
    // The file ends before the scan data.
    h.truncated = true;
}

void probeTiff(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    const bool little = d[0] == 'I';
    auto u16 = [&](std::size_t at) { return little ? le16(d + at) : be16(d + at); };
    auto u32 = [&](std::size_t at) { return little ? le32(d + at) : be32(d + at); };
    auto u64 = [&](std::size_t at) { return little ? le64(d + at) : be64(d + at); };
    const bool big = u16(2) == 43;
    uint64_t ifd, count;
    std::size_t entrySize, countSize;
    if (big) {
        if (n < 16)
            return;
        ifd = u64(8);
        entrySize = 20;
        countSize = 8;
    } else {
        ifd = u32(4);
        entrySize = 12;
        countSize = 2;
    }
    if (ifd > n || n - ifd < countSize)
        return;
    count = countSize == 8 ? u64(ifd) : u16(ifd);
    const std::size_t first = ifd + countSize;
    count = std::min<uint64_t>(count, (n - first) / entrySize);
    // A tag may repeat: libtiff (tif_dirread.c, TIFFReadDirectory) uses its FIRST entry and
    // ignores the later ones, so the probe does the same. Keeping the last one let a 9.5 KB file
    // with huge first sizes and small second ones past the pixel limit (2.8 GB decoded).
    bool seenWidth = false, seenHeight = false;
    for (uint64_t k = 0; k < count; ++k) {
        const std::size_t e = first + k * entrySize;
        const uint32_t tag = u16(e), type = u16(e + 2);
        if (tag != 256 && tag != 257)
            continue;
        bool& seen = tag == 256 ? seenWidth : seenHeight;
        if (seen)
            continue;
        seen = true;
        const std::size_t value = e + (big ? 12 : 8);
        int64_t v = -1;
        if (type == 3)
            v = u16(value);
        else if (type == 4)
            v = u32(value);
        else if (type == 16 && big)
            v = static_cast<int64_t>(std::min<uint64_t>(u64(value), uint64_t(1) << 40));
        (tag == 256 ? h.width : h.height) = v;
    }
}

void probeWebP(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    if (n < 30)
        return;
    if (std::memcmp(d + 12, "VP8 ", 4) == 0) {
        if (d[23] == 0x9d && d[24] == 0x01 && d[25] == 0x2a) {
            h.width = le16(d + 26) & 0x3fff;
            h.height = le16(d + 28) & 0x3fff;
        }
    } else if (std::memcmp(d + 12, "VP8L", 4) == 0) {
        if (d[20] == 0x2f) {
            const uint32_t bits = le32(d + 21);
            h.width = (bits & 0x3fff) + 1;
            h.height = ((bits >> 14) & 0x3fff) + 1;
        }
    } else if (std::memcmp(d + 12, "VP8X", 4) == 0) {
        h.width = int64_t(d[24] | (d[25] << 8) | (d[26] << 16)) + 1;
        h.height = int64_t(d[27] | (d[28] << 8) | (d[29] << 16)) + 1;
    }
}

// Whitespace-separated decimal header fields with '#' comments (PBM/PGM/PPM/PFM).
bool pnmNumber(const uint8_t* d, std::size_t n, std::size_t& pos, int64_t& out)
{
    for (;;) {
        while (pos < n && std::isspace(d[pos]))
            ++pos;
        if (pos < n && d[pos] == '#') {
            while (pos < n && d[pos] != '\n' && d[pos] != '\r')
                ++pos;
            continue;
        }
        break;
    }
    if (pos >= n || !std::isdigit(d[pos]))
        return false;
    out = 0;
    while (pos < n && std::isdigit(d[pos])) {
        out = out * 10 + (d[pos++] - '0');
        if (out > (int64_t(1) << 40))
            return false;
    }
    return true;
}

void probePnm(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    std::size_t pos = 2;
    if (d[1] == '7') {
        // PAM: "WIDTH w" / "HEIGHT h" lines up to ENDHDR.
        const std::size_t limit = std::min<std::size_t>(n, 4096);
        std::string text(reinterpret_cast<const char*>(d), limit);
        for (const char* key : {"\nWIDTH", "\nHEIGHT"}) {
            const auto at = text.find(key);
            if (at == std::string::npos)
                return;
            std::size_t p = at + std::strlen(key);
            int64_t v = -1;
            if (!pnmNumber(d, limit, p, v))
                return;
            (key[1] == 'W' ? h.width : h.height) = v;
        }
        return;
    }
    int64_t w, hh;
    if (pnmNumber(d, n, pos, w) && pnmNumber(d, n, pos, hh)) {
        h.width = w;
        h.height = hh;
    }
}

void probeJp2(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    if (startsWith(d, n, "\xff\x4f\xff\x51", 4)) {
        // Raw codestream: the SIZ segment follows SOC.
        if (n < 24)
            return;
        const int64_t x = be32(d + 8), y = be32(d + 12), x0 = be32(d + 16), y0 = be32(d + 20);
        if (x > x0 && y > y0) {
            h.width = x - x0;
            h.height = y - y0;
        }
        return;
    }
    // JP2 boxes; the image header box sits inside the jp2h super-box.
    std::size_t pos = 0, end = n;
    for (int guard = 0; guard < 4096 && pos + 8 <= end; ++guard) {
        uint64_t len = be32(d + pos);
        const char* type = reinterpret_cast<const char*>(d + pos + 4);
        std::size_t header = 8;
        if (len == 1) {
            if (pos + 16 > end)
                return;
            len = be64(d + pos + 8);
            header = 16;
        } else if (len == 0) {
            len = end - pos;
        }
        if (len < header || len > end - pos)
            return;
        if (std::memcmp(type, "jp2h", 4) == 0) {
            end = pos + static_cast<std::size_t>(len);
            pos += header;
            continue;
        }
        if (std::memcmp(type, "ihdr", 4) == 0) {
            if (len < header + 8)
                return;
            h.height = be32(d + pos + header);
            h.width = be32(d + pos + header + 4);
            return;
        }
        pos += static_cast<std::size_t>(len);
    }
}

void probeRadiance(const uint8_t* d, std::size_t n, ImageHeader& h)
{
    const std::size_t limit = std::min<std::size_t>(n, 8192);
    const std::string text(reinterpret_cast<const char*>(d), limit);
    const auto blank = text.find("\n\n");
    if (blank == std::string::npos)
        return;
    std::size_t pos = blank + 2;
    int64_t values[2] = {-1, -1};
    char axes[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
        while (pos < limit && text[pos] == ' ')
            ++pos;
        if (pos + 2 > limit || (text[pos] != '-' && text[pos] != '+') || (text[pos + 1] != 'X' && text[pos + 1] != 'Y'))
            return;
        axes[k] = text[pos + 1];
        pos += 2;
        if (!pnmNumber(d, limit, pos, values[k]))
            return;
    }
    if (axes[0] == axes[1])
        return;
    h.width = axes[0] == 'X' ? values[0] : values[1];
    h.height = axes[0] == 'Y' ? values[0] : values[1];
}

std::string leadingBytes(const uint8_t* d, std::size_t n)
{
    std::string out;
    for (std::size_t i = 0; i < std::min<std::size_t>(n, 8); ++i) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02x", d[i]);
        out += (i ? " " : "") + std::string(buf);
    }
    return out;
}

// 8-bit version of one channel-plane set; float images are taken as [0, 1].
cv::Mat toUnitFloat(const cv::Mat& m, const std::string& name)
{
    cv::Mat out;
    switch (m.depth()) {
    case CV_8U:
        m.convertTo(out, CV_32F, 1.0 / 255.0);
        break;
    case CV_16U:
        m.convertTo(out, CV_32F, 1.0 / 65535.0);
        break;
    case CV_32F:
    case CV_64F:
        m.convertTo(out, CV_32F);
        break;
    default:
        throw ImageError(name + ": unsupported pixel type (signed or 32-bit integer samples)");
    }
    return out;
}

cv::Mat to8Bit(const cv::Mat& m, const std::string& name)
{
    cv::Mat out;
    switch (m.depth()) {
    case CV_8U:
        return m;
    case CV_16U:
        m.convertTo(out, CV_8U, 1.0 / 257.0);
        return out;  // 65535 -> 255, rounded
    case CV_32F:
    case CV_64F:
        m.convertTo(out, CV_8U, 255.0);
        return out;  // saturating: [0, 1] -> [0, 255]
    default:
        throw ImageError(name + ": unsupported pixel type (signed or 32-bit integer samples)");
    }
}

// Colour (1 or 3 channels) composited over white with the given alpha, all float in [0, 1].
cv::Mat overWhite(const cv::Mat& colour, const cv::Mat& alpha)
{
    cv::Mat inverse = 1.0 - alpha;
    std::vector<cv::Mat> planes;
    cv::split(colour, planes);
    for (auto& p : planes)
        p = p.mul(alpha) + inverse;
    cv::Mat out;
    cv::merge(planes, out);
    out.convertTo(out, CV_8U, 255.0);
    return out;
}

cv::Mat greyToBgr(const cv::Mat& grey)
{
    cv::Mat out;
    cv::merge(std::vector<cv::Mat>{grey, grey, grey}, out);
    return out;
}

}  // namespace

int64_t defaultMaxImagePixels()
{
    static const int64_t limit = [] {
        if (const char* env = std::getenv("FEC_MAX_IMAGE_PIXELS")) {
            char* end = nullptr;
            const long long v = std::strtoll(env, &end, 10);
            if (end != env && *end == '\0' && v > 0)
                return static_cast<int64_t>(v);
        }
        return kPillowLimit;
    }();
    return limit;
}

std::string imageFormatName(ImageFormat format)
{
    switch (format) {
    case ImageFormat::Png:
        return "PNG";
    case ImageFormat::Jpeg:
        return "JPEG";
    case ImageFormat::Bmp:
        return "BMP";
    case ImageFormat::Tiff:
        return "TIFF";
    case ImageFormat::WebP:
        return "WebP";
    case ImageFormat::Gif:
        return "GIF";
    case ImageFormat::Pnm:
        return "PNM";
    case ImageFormat::Jpeg2000:
        return "JPEG 2000";
    case ImageFormat::SunRaster:
        return "Sun raster";
    case ImageFormat::Radiance:
        return "Radiance HDR";
    case ImageFormat::OpenExr:
        return "OpenEXR";
    case ImageFormat::Unknown:
        break;
    }
    return "unknown";
}

ImageHeader probeImageHeader(const uint8_t* d, std::size_t n)
{
    ImageHeader h;
    if (!d || n < 2)
        return h;
    if (startsWith(d, n, "\x89PNG\r\n\x1a\n", 8)) {
        h.format = ImageFormat::Png;
        if (n >= 24 && std::memcmp(d + 12, "IHDR", 4) == 0) {
            h.width = be32(d + 16);
            h.height = be32(d + 20);
        }
    } else if (d[0] == 0xff && d[1] == 0xd8) {
        h.format = ImageFormat::Jpeg;
        probeJpeg(d, n, h);
    } else if (d[0] == 'B' && d[1] == 'M') {
        h.format = ImageFormat::Bmp;
        if (n >= 26) {
            if (le32(d + 14) == 12) {
                h.width = le16(d + 18);
                h.height = le16(d + 20);
            } else {
                const auto w = static_cast<int32_t>(le32(d + 18));
                const auto hh = static_cast<int32_t>(le32(d + 22));  // negative: stored top-down
                h.width = w;
                h.height = hh < 0 ? -int64_t(hh) : hh;
            }
        }
    } else if (startsWith(d, n, "II*\0", 4) || startsWith(d, n, "MM\0*", 4) || startsWith(d, n, "II+\0", 4) ||
               startsWith(d, n, "MM\0+", 4)) {
        h.format = ImageFormat::Tiff;
        if (n >= 8)
            probeTiff(d, n, h);
    } else if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) {
        h.format = ImageFormat::WebP;
        probeWebP(d, n, h);
    } else if (startsWith(d, n, "GIF87a", 6) || startsWith(d, n, "GIF89a", 6)) {
        h.format = ImageFormat::Gif;
        if (n >= 10) {
            h.width = le16(d + 6);
            h.height = le16(d + 8);
        }
    } else if (d[0] == 'P' && ((d[1] >= '1' && d[1] <= '7') || d[1] == 'F' || d[1] == 'f')) {
        h.format = ImageFormat::Pnm;
        probePnm(d, n, h);
    } else if (startsWith(d, n, "\0\0\0\x0cjP  \r\n\x87\n", 12) || startsWith(d, n, "\xff\x4f\xff\x51", 4)) {
        h.format = ImageFormat::Jpeg2000;
        probeJp2(d, n, h);
    } else if (startsWith(d, n, "\x59\xa6\x6a\x95", 4)) {
        h.format = ImageFormat::SunRaster;
        if (n >= 12) {
            h.width = be32(d + 4);
            h.height = be32(d + 8);
        }
    } else if (startsWith(d, n, "#?RADIANCE", 10) || startsWith(d, n, "#?RGBE", 6)) {
        h.format = ImageFormat::Radiance;
        probeRadiance(d, n, h);
    } else if (startsWith(d, n, "\x76\x2f\x31\x01", 4)) {
        h.format = ImageFormat::OpenExr;
    }
    return h;
}

cv::Mat decodeImageBgr(const uint8_t* data, std::size_t size, const std::string& name, const ImageLoadOptions& options)
{
    if (size == 0)
        throw ImageError(name + ": the file is empty");
    const ImageHeader header = probeImageHeader(data, size);
    const std::string format = imageFormatName(header.format);
    switch (header.format) {
    case ImageFormat::Unknown:
        throw ImageError(name + ": not a readable image (unknown format; the file starts with " +
                         leadingBytes(data, size) + ")");
    case ImageFormat::Gif:
        throw ImageError(name + ": GIF images are not supported (OpenCV cannot decode them); convert it to PNG");
    case ImageFormat::OpenExr:
        throw ImageError(name + ": OpenEXR images are not supported; convert it to PNG or TIFF");
    default:
        break;
    }
    if (header.width < 0 || header.height < 0)
        throw ImageError(name + ": not a readable image (the " + format + " header is truncated or damaged)");
    if (header.width == 0 || header.height == 0)
        throw ImageError(name + ": the " + format + " header gives an empty image (" + std::to_string(header.width) +
                         "x" + std::to_string(header.height) + " pixels)");
    // Both sides are below 2^40 here; the first test keeps the product from overflowing.
    if (header.width > (int64_t(1) << 31) || header.height > (int64_t(1) << 31) ||
        header.width * header.height > options.maxPixels)
        throw ImageError(name + ": the image is " + std::to_string(header.width) + "x" + std::to_string(header.height) +
                         " pixels, more than the limit of " + std::to_string(options.maxPixels) +
                         " (refused as a possible decompression bomb; set FEC_MAX_IMAGE_PIXELS to allow more)");
    if (header.truncated)
        throw ImageError(name + ": not a readable image (the JPEG data is truncated: no end-of-image marker)");
    // libjpeg re-reads the whole coefficient buffer for every scan: thousands of tiny scans make
    // a small file decode for minutes. Encoders write about 10.
    if (header.scans > kMaxJpegScans)
        throw ImageError(name + ": refused: the JPEG has " + std::to_string(header.scans) +
                         " progressive scans (more than " + std::to_string(kMaxJpegScans) + ")");

    // JPEG has no alpha: IMREAD_COLOR converts grey/CMYK/YCCK and applies EXIF orientation, in
    // one decode. Other formats keep alpha and depth (IMREAD_UNCHANGED); libtiff orients TIFF.
    const int flags = header.format == ImageFormat::Jpeg ? cv::IMREAD_COLOR : cv::IMREAD_UNCHANGED;
    if (size > std::numeric_limits<int32_t>::max())
        throw ImageError(name + ": the file is too large to decode (over 2 GiB)");
    cv::Mat raw;
    try {
        const cv::Mat encoded(1, static_cast<int>(size), CV_8UC1, const_cast<uint8_t*>(data));
        raw = cv::imdecode(encoded, flags);
    } catch (const cv::Exception& e) {
        throw ImageError(name + ": cannot decode the " + format + " image (" + e.msg + ")");
    }
    if (raw.empty())
        throw ImageError(name + ": not a readable image (the " + format + " data is truncated or corrupt)");
    if (static_cast<int64_t>(raw.rows) * raw.cols > options.maxPixels)
        throw ImageError(name + ": the image is " + std::to_string(raw.cols) + "x" + std::to_string(raw.rows) +
                         " pixels, more than the limit of " + std::to_string(options.maxPixels));

    switch (raw.channels()) {
    case 1:
        return greyToBgr(to8Bit(raw, name));
    case 3:
        return to8Bit(raw, name);
    case 2:
    case 4: {
        // Transparent areas become white, whatever colour they hide.
        std::vector<cv::Mat> planes;
        cv::split(raw, planes);
        const cv::Mat alpha = toUnitFloat(planes.back(), name);
        planes.pop_back();
        cv::Mat colour;
        cv::merge(planes, colour);
        cv::Mat out = overWhite(toUnitFloat(colour, name), alpha);
        return out.channels() == 1 ? greyToBgr(out) : out;
    }
    default:
        throw ImageError(name + ": unsupported image with " + std::to_string(raw.channels()) + " channels");
    }
}

cv::Mat loadImageBgr(const std::string& path, const ImageLoadOptions& options)
{
    std::vector<uint8_t> bytes;
    try {
        bytes = readFileBytes(path, options.maxFileBytes);
    } catch (const std::exception& e) {
        throw ImageError(e.what());
    }
    return decodeImageBgr(bytes.data(), bytes.size(), path, options);
}

namespace {

cv::Mat swapRedBlue(const cv::Mat& bgr)
{
    // mixChannels stays on the calling thread (cvtColor may start a thread team).
    cv::Mat rgb(bgr.size(), CV_8UC3);
    const int pairs[] = {0, 2, 1, 1, 2, 0};
    cv::mixChannels(&bgr, 1, &rgb, 1, pairs, 3);
    return rgb;
}

}  // namespace

cv::Mat decodeImageRgb(const std::vector<uint8_t>& bytes, const std::string& name, const ImageLoadOptions& options)
{
    return swapRedBlue(decodeImageBgr(bytes.data(), bytes.size(), name, options));
}

cv::Mat loadImageRgb(const std::string& path, const ImageLoadOptions& options)
{
    return swapRedBlue(loadImageBgr(path, options));
}

}  // namespace fec::imaging
