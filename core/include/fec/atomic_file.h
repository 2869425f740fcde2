#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fec {

/// Writes `bytes` to `path` so that a reader sees either the old file or the complete new one:
/// a temporary file in the same folder, fsync, rename over `path`, fsync of the folder.
/// Throws std::runtime_error naming the file and the OS error (e.g. "No space left on device");
/// the previous file is left untouched on failure.
void writeFileAtomic(const std::string& path, const void* data, std::size_t size);
void writeFileAtomic(const std::string& path, const std::vector<uint8_t>& bytes);
void writeFileAtomic(const std::string& path, const std::string& text);

/// Reads a whole file; throws std::runtime_error naming the file when it cannot be read or is
/// larger than `maxBytes`.
std::vector<uint8_t> readFileBytes(const std::string& path, uint64_t maxBytes = ~0ull);

}  // namespace fec
