// libFuzzer target: bytes -> train::readIdx (Fashion-MNIST's IDX files, gzip'd or raw), read from
// an in-memory file so that no disk I/O slows the runs. Any input must end in an array whose
// data matches its dimensions, or a DataError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include "fec/train/dataset.h"

namespace {

int memoryFile()
{
    static const int fd = ::memfd_create("fuzz_idx", 0);
    return fd;
}

void checkArray(const fec::train::IdxArray& a)
{
    int64_t total = 1;
    for (int64_t d : a.dims) {
        if (d <= 0)
            std::abort();
        total *= d;
    }
    if (a.dims.empty() || static_cast<int64_t>(a.data.size()) != total)
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size)
{
    const int fd = memoryFile();
    if (fd < 0 || ::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))
        std::abort();
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    for (int64_t maxItems : {int64_t(0), int64_t(3)}) {
        try {
            checkArray(fec::train::readIdx(path, maxItems));
        } catch (const fec::train::DataError&) {
        }
    }
    return 0;
}
