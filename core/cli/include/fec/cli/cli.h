#pragma once

// The `fec` command-line tool: every subcommand as a function, so tests can call them.

#include <string>
#include <vector>

namespace fec::cli {

/// Runs `fec` with the given arguments (argv[0] included). Returns the exit status:
/// 0 success, 1 some inputs failed, 2 usage or fatal error. Messages go to stdout/stderr.
int run(int argc, char** argv);

/// Folder holding `labels/`, `samples/` (installed share folder, or the source tree).
std::string resourceDir();

/// The shipped default model: the first *.pth.tar (by name) in resourceDir()/models (installed:
/// share/fec-explorer/models) or resourceDir()/../models (the source tree). Empty when none.
std::string defaultModelPath();

/// Class names for a model: stored names, a labels file (path or "imagenet1k"/"fashion-mnist"),
/// ImageNet-1K names for 1000 classes, numbers otherwise.
std::vector<std::string> classNamesFor(int numClasses, const std::vector<std::string>& stored,
                                       const std::string& labels);

}  // namespace fec::cli
