#pragma once

// Text from files (file names, class names, checkpoint strings) made safe to print and to put in JSON.

#include <filesystem>
#include <string>
#include <string_view>

namespace fec {

/// `text` as valid UTF-8 that cannot drive a terminal: valid UTF-8 is kept; invalid bytes become
/// `\xNN` (the byte in hex); C0 controls, DEL and C1 controls become `\n`, `\t`, `\r`, `\xNN` or
/// `\u0085`; bidirectional overrides and line/paragraph separators become `\u202e` and the like.
/// The result is readable, always valid UTF-8 (nlohmann::json dumps it without error) and one line.
/// Backslashes are kept as they are, so a name is shown as a user would type it.
std::string printable(std::string_view text);

/// printable() line by line: the line breaks of a multi-line message are kept, all else is escaped.
std::string printableLines(std::string_view text);

/// A file path (bytes on POSIX, any encoding) as printable(): `dir/\xff.png`.
std::string printablePath(const std::filesystem::path& path);

/// True when `text` needs no escaping (printable(text) == text).
bool isPrintable(std::string_view text);

}  // namespace fec
