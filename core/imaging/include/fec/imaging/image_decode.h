#pragma once

// Decoding untrusted image files to 8-bit colour pictures (OpenCV, no LibTorch: it is also
// built alone into the image fuzzer).

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace fec::imaging {

/// An image that cannot be used; `what()` names the file and the problem.
class ImageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The pixel limit used when none is given: $FEC_MAX_IMAGE_PIXELS when set to a positive
/// integer, else 178,956,970 (Pillow's decompression-bomb limit, about 13400 x 13400).
int64_t defaultMaxImagePixels();

struct ImageLoadOptions {
    /// Refuse images with more pixels than this, judged from the file header before anything
    /// is decoded (a 100-byte PNG can claim 10^10 pixels). OpenCV 4.6 has its own ceiling of
    /// 2^30 pixels ($OPENCV_IO_MAX_IMAGE_PIXELS) that applies on top of this one.
    int64_t maxPixels = defaultMaxImagePixels();
    uint64_t maxFileBytes = 1ull << 30;  ///< refuse larger files before reading them
};

/// The container formats recognised from their first bytes.
enum class ImageFormat { Unknown, Png, Jpeg, Bmp, Tiff, WebP, Gif, Pnm, Jpeg2000, SunRaster, Radiance, OpenExr };

/// Name for messages: "PNG", "JPEG", ...
std::string imageFormatName(ImageFormat format);

/// What the header of an encoded image says, read without decoding pixels.
struct ImageHeader {
    ImageFormat format = ImageFormat::Unknown;
    int64_t width = -1, height = -1;  ///< -1 when the header is cut short or damaged
    bool truncated = false;           ///< JPEG: no end-of-image marker after the scan data
    int64_t scans = 0;                ///< JPEG: scans (SOS markers); progressive files have several
};

/// Reads the format and the pixel size from the first bytes of an encoded image. Never throws,
/// never reads outside [data, data + size).
ImageHeader probeImageHeader(const uint8_t* data, std::size_t size);

/// Decodes encoded bytes to 8-bit BGR (CV_8UC3): grey is replicated, alpha (grey + alpha or
/// BGRA) is composited over white, 16-bit is scaled to 8-bit (v / 257, rounded), float images
/// are taken as [0, 1] and clamped, CMYK JPEG is converted, EXIF orientation is applied (JPEG
/// by OpenCV's IMREAD_COLOR, TIFF by libtiff). The pixel limit is checked on the header first.
/// Throws ImageError whose message starts with `name`.
cv::Mat decodeImageBgr(const uint8_t* data, std::size_t size, const std::string& name,
                       const ImageLoadOptions& options = {});

/// Reads a file (any path the OS accepts, UTF-8 included: the bytes are read here and decoded
/// from memory) and decodes it like decodeImageBgr. Throws ImageError naming the file.
cv::Mat loadImageBgr(const std::string& path, const ImageLoadOptions& options = {});

/// decodeImageBgr with the channels in RGB order.
cv::Mat decodeImageRgb(const std::vector<uint8_t>& bytes, const std::string& name,
                       const ImageLoadOptions& options = {});

/// loadImageBgr with the channels in RGB order (CV_8UC3). Throws ImageError naming the file.
cv::Mat loadImageRgb(const std::string& path, const ImageLoadOptions& options = {});

}  // namespace fec::imaging
