#include "fec/resources.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace fec {

namespace {

std::string executableDir()
{
    std::error_code ec;
    auto exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : exe.parent_path().string();
}

}  // namespace

std::string resourceDir()
{
    if (const char* env = std::getenv("FEC_RESOURCES_DIR"))
        return env;
    const auto exeDir = executableDir();
    for (const auto& candidate : {fs::path(exeDir) / ".." / "share" / "fec-explorer", fs::path(FEC_SOURCE_RESOURCES)}) {
        std::error_code ec;
        if (fs::exists(candidate / "labels" / "imagenet1k.txt", ec))
            return fs::weakly_canonical(candidate, ec).string();
    }
    return FEC_SOURCE_RESOURCES;
}

std::string defaultModelPath()
{
    const fs::path resources = resourceDir();
    for (const auto& dir : {resources / "models", resources / ".." / "models"}) {
        std::error_code ec;
        std::vector<std::string> found;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const auto name = it->path().filename().string();
            if (name.size() > 8 && name.compare(name.size() - 8, 8, ".pth.tar") == 0 && it->is_regular_file(ec))
                found.push_back(it->path().string());
        }
        if (!found.empty()) {
            std::sort(found.begin(), found.end());
            return fs::weakly_canonical(found.front(), ec).string();
        }
    }
    return {};
}

std::vector<std::string> classNamesFor(int numClasses, const std::vector<std::string>& stored,
                                       const std::string& labels)
{
    auto readLines = [](const std::string& path) {
        std::ifstream in(path);
        if (!in)
            throw std::runtime_error("cannot read labels file " + path);
        std::vector<std::string> lines;
        for (std::string line; std::getline(in, line);)
            if (!line.empty())
                lines.push_back(line);
        return lines;
    };
    std::vector<std::string> names;
    if (!labels.empty()) {
        std::string path = labels;
        if (labels == "imagenet1k" || labels == "fashion-mnist")
            path = resourceDir() + "/labels/" + (labels == "imagenet1k" ? "imagenet1k.txt" : "fashion_mnist.txt");
        names = readLines(path);
        if (static_cast<int>(names.size()) != numClasses)
            throw std::runtime_error("labels file " + path + " has " + std::to_string(names.size()) +
                                     " names but the model has " + std::to_string(numClasses) + " classes");
    } else if (static_cast<int>(stored.size()) == numClasses) {
        names = stored;
    } else if (numClasses == 1000) {
        names = readLines(resourceDir() + "/labels/imagenet1k.txt");
    }
    if (static_cast<int>(names.size()) != numClasses) {
        names.clear();
        for (int i = 0; i < numClasses; ++i)
            names.push_back("class " + std::to_string(i));
    }
    return names;
}

}  // namespace fec
