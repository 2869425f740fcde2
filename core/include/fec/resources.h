#pragma once

// Where the program's data lives (labels, sample images, the shipped default model) and the
// class names a model's outputs are shown with. Used by the `fec` commands and the window alike.

#include <string>
#include <vector>

namespace fec {

/// Folder holding `labels/` and `samples/`: $FEC_RESOURCES_DIR, else the installed share folder
/// next to the executable (../share/fec-explorer), else the source tree's resources/.
std::string resourceDir();

/// The shipped default model: the first *.pth.tar (by name) in resourceDir()/models (installed:
/// share/fec-explorer/models) or resourceDir()/../models (the source tree). Empty when none.
std::string defaultModelPath();

/// Class names for a model: a labels file (`labels`: a path, or "imagenet1k" / "fashion-mnist"),
/// else the names stored in the checkpoint, else ImageNet-1K names for 1000 classes, else
/// "class 0", "class 1", ... Throws std::runtime_error naming the labels file when it cannot be
/// read or has the wrong number of names.
std::vector<std::string> classNamesFor(int numClasses, const std::vector<std::string>& stored,
                                       const std::string& labels);

}  // namespace fec
