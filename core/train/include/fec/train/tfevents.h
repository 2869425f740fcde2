#pragma once

// TensorBoard event files (events.out.tfevents.*), written and read without TensorFlow or
// protobuf: TFRecord framing (length, masked CRC32C of the length, payload, masked CRC32C of the
// payload) around hand-encoded Event / Summary protobuf messages.

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fec::train {

/// CRC-32C (Castagnoli), as TFRecord uses; `crc` continues a previous value.
uint32_t crc32c(const void* data, std::size_t size, uint32_t crc = 0);
/// TFRecord's masking: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t maskCrc(uint32_t crc);

/// One Event message (the fields this writer uses).
struct TfEvent {
    double wallTime = 0;
    int64_t step = 0;
    std::string fileVersion;                             ///< only in the first event ("brain.Event:2")
    std::vector<std::pair<std::string, float>> scalars;  ///< summary values (tag, simple_value)
};

/// Serialises an Event: wall_time (field 1, double), step (2, int64), file_version (3, string),
/// summary (5) with repeated value (1) {tag (1, string), simple_value (2, float)}.
std::string encodeEvent(const TfEvent& event);
/// Parses what encodeEvent writes (unknown fields are skipped). Throws std::runtime_error.
TfEvent decodeEvent(const std::string& bytes);

/// Appends scalar events to RUN_DIR/events.out.tfevents.<seconds>.<host>.
class EventWriter {
public:
    /// Creates the file and writes the file_version event. Throws std::runtime_error naming it.
    explicit EventWriter(const std::string& directory);
    const std::string& path() const { return m_path; }
    /// One event holding `scalars` at `step`.
    void write(int64_t step, const std::vector<std::pair<std::string, float>>& scalars, double wallTime = 0);
    void flush();

private:
    void record(const std::string& payload);
    std::string m_path;
    std::ofstream m_out;
};

/// Reads every record of an event file, checking both CRCs; throws std::runtime_error naming the
/// file and the record on a mismatch or truncation.
std::vector<TfEvent> readEventFile(const std::string& path);

}  // namespace fec::train
