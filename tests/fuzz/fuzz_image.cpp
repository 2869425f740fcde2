// libFuzzer target: bytes -> the header probe and decodeImageBgr (what loadImageRgb and the
// training image folder use after reading a file). Any input must end in a CV_8UC3 picture
// within the pixel limit or an ImageError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <opencv2/core/utility.hpp>

#include "fec/imaging/image_decode.h"

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    cv::setNumThreads(0);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size)
{
    using namespace fec::imaging;
    const ImageHeader header = probeImageHeader(data, size);
    if (header.width > (int64_t(1) << 40) || header.height > (int64_t(1) << 40))
        std::abort();
    ImageLoadOptions options;
    options.maxPixels = 1 << 20;  // keeps each run fast; the limit logic is the same
    try {
        const cv::Mat bgr = decodeImageBgr(data, size, "fuzz", options);
        if (bgr.type() != CV_8UC3 || bgr.empty() || static_cast<int64_t>(bgr.rows) * bgr.cols > options.maxPixels)
            std::abort();
    } catch (const ImageError&) {
    }
    return 0;
}
