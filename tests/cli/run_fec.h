#pragma once

// Calls the `fec` command line in-process, as a script would call the executable.

#include <string>
#include <vector>

#include "fec/cli/cli.h"

namespace fec::test {

/// Runs `fec args...` and returns its exit status.
inline int runFec(std::vector<std::string> args)
{
    args.insert(args.begin(), "fec");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    return cli::run(static_cast<int>(argv.size()), argv.data());
}

}  // namespace fec::test
