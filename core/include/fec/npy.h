#pragma once

// NumPy .npy files (format 1.0/2.0/3.0 read, 1.0 written), little-endian, C order.

#include <cstdint>
#include <string>
#include <vector>

namespace fec::npy {

/// A decoded array: `descr` is the NumPy dtype string ("<f4", "<i8", "|u1", "<i4", "|b1", ...).
struct Array {
    std::string descr;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;  ///< product(shape) * itemsize bytes, C order, little-endian
    std::size_t itemSize() const;
    int64_t numel() const;
};

/// Parses an .npy file in memory. Throws std::runtime_error naming the problem (bad magic,
/// unsupported dtype or Fortran order, big-endian data, truncated payload, header too long).
Array parse(const std::vector<uint8_t>& data);
/// Reads an .npy file. Errors name the file.
Array read(const std::string& path);
/// Serialises as format 1.0 (header padded to a multiple of 64 bytes, as NumPy does).
std::vector<uint8_t> serialize(const Array& array);
/// Writes atomically (temp file + fsync + rename). Errors name the file.
void write(const std::string& path, const Array& array);

}  // namespace fec::npy
