#include "fec/file_hash.h"

#include <c10/util/hash.h>

#include "fec/atomic_file.h"

namespace fec {

std::string fileSha1(const std::string& path)
{
    const auto bytes = readFileBytes(path);
    // c10::sha1 hashes one string; a model file is read once anyway (tens of MB at most here).
    c10::sha1 hash(std::string(bytes.begin(), bytes.end()));
    if (bytes.empty())
        hash.reset();  // its constructor skips reset() for an empty string
    return hash.str();
}

}  // namespace fec
