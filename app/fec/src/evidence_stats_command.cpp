// Placeholder until the command lands (being written now).
#include "commands.h"

namespace fec::cli {
void addEvidenceStatsCommand(CLI::App&, std::vector<std::unique_ptr<Command>>&) {}
}  // namespace fec::cli
