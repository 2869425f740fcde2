#pragma once

// The `fec` command-line tool: every subcommand as a function, so tests can call them.

#include <string>
#include <vector>

namespace fec::cli {

/// Runs `fec` with the given arguments (argv[0] included). Returns the exit status:
/// 0 success, 1 some inputs failed, 2 usage or fatal error. Messages go to stdout/stderr.
int run(int argc, char** argv);

}  // namespace fec::cli
