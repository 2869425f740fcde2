#include "fec/datasets/image_folder.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include "fec/imaging/image_decode.h"
#include "fec/text.h"

namespace fs = std::filesystem;

namespace fec::datasets {

namespace {

std::string lowerExtension(const fs::path& p)
{
    auto ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

bool isImageFile(const fs::path& p)
{
    static const std::set<std::string> kExtensions{".jpg",  ".jpeg", ".png", ".bmp", ".tif", ".tiff",
                                                   ".webp", ".pgm",  ".ppm", ".pnm", ".jp2"};
    return kExtensions.count(lowerExtension(p)) > 0;
}

std::vector<std::string> imagesUnder(const fs::path& folder)
{
    std::vector<std::string> found;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(
             folder, fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied,
             ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && isImageFile(it->path()))
            found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    return found;
}

std::vector<std::string> classFolders(const fs::path& root)
{
    std::vector<std::string> names;
    std::error_code ec;
    for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        if (it->is_directory(ec) && it->path().filename().string().rfind('.', 0) != 0)
            names.push_back(it->path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// Class name -> folder name (bytes). A folder name is any bytes on Linux; the class name is the
// same name made printable (fec::printable): it is stored in checkpoints (pickled as UTF-8 text),
// written to JSON and printed, so it must be valid UTF-8 without control characters.
std::map<std::string, std::string> classFolderNames(const std::string& root)
{
    std::map<std::string, std::string> folders;
    for (const auto& folder : classFolders(root)) {
        const auto name = printable(folder);
        if (!folders.emplace(name, folder).second)
            throw train::DataError(printable(root) + ": two class folders are both shown as '" + name +
                                   "'; rename one of them");
    }
    return folders;
}

}  // namespace

ImageFolder::ImageFolder(const std::string& root, std::vector<std::string> classNames) : m_root(root)
{
    std::error_code ec;
    if (!fs::is_directory(root, ec))
        throw train::DataError(root + ": not a folder");
    const bool fixedClasses = !classNames.empty();
    const auto folders = classFolderNames(root);
    if (fixedClasses) {
        m_classes = std::move(classNames);
    } else {
        for (const auto& [name, folder] : folders)
            m_classes.push_back(name);
    }
    if (m_classes.empty())
        throw train::DataError(root + ": no class folders (expected ROOT/<class>/<image>)");
    if (fixedClasses) {
        for (const auto& [name, folder] : folders)
            if (std::find(m_classes.begin(), m_classes.end(), name) == m_classes.end())
                throw train::DataError(root + ": class folder '" + name + "' is not one of the training classes");
    }
    std::vector<std::string> empty;
    for (size_t c = 0; c < m_classes.size(); ++c) {
        const auto found = folders.find(m_classes[c]);
        const auto folder = fs::path(root) / (found != folders.end() ? found->second : m_classes[c]);
        auto files = fs::is_directory(folder, ec) ? imagesUnder(folder) : std::vector<std::string>{};
        if (files.empty())
            empty.push_back(m_classes[c]);
        for (auto& f : files) {
            m_files.push_back(std::move(f));
            m_labels.push_back(static_cast<int64_t>(c));
        }
    }
    if (m_files.empty())
        throw train::DataError(root + ": no images (jpg, png, ...) in its class folders");
    if (!fixedClasses && !empty.empty())
        throw train::DataError(root + ": class folder '" + empty.front() + "' has no images");
}

bool ImageFolder::looksLikeImageFolder(const std::string& root)
{
    std::error_code ec;
    if (!fs::is_directory(root, ec))
        return false;
    for (const auto& name : classFolders(root)) {
        for (auto it = fs::recursive_directory_iterator(fs::path(root) / name, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->is_regular_file(ec) && isImageFile(it->path()))
                return true;
    }
    return false;
}

at::Tensor ImageFolder::decode(const std::string& path) const
{
    cv::Mat bgr;
    try {
        // Pixel limit, alpha over white, 16-bit, EXIF orientation: the same as `fec predict`.
        bgr = imaging::loadImageBgr(path);
    } catch (const imaging::ImageError& e) {
        throw train::DataError(e.what());
    } catch (const cv::Exception& e) {
        throw train::DataError(path + ": cannot decode the image (" + e.msg + ")");
    }
    // Channel order fixed while copying: cv::cvtColor could start a thread team in a loader thread.
    auto image = at::empty({bgr.rows, bgr.cols, 3}, at::kByte);
    auto* out = image.data_ptr<uint8_t>();
    for (int y = 0; y < bgr.rows; ++y) {
        const auto* row = bgr.ptr<uint8_t>(y);
        for (int x = 0; x < bgr.cols; ++x) {
            const auto* p = row + 3 * x;
            auto* q = out + (static_cast<size_t>(y) * bgr.cols + x) * 3;
            q[0] = p[2];
            q[1] = p[1];
            q[2] = p[0];
        }
    }
    return image;
}

int64_t ImageFolder::maxBadFiles() const
{
    return std::max<int64_t>(m_maxBadFiles, static_cast<int64_t>(m_maxBadFraction * static_cast<double>(size())));
}

void ImageFolder::setBadFileTolerance(int64_t count, double fraction)
{
    m_maxBadFiles = std::max<int64_t>(0, count);
    m_maxBadFraction = std::clamp(fraction, 0.0, 1.0);
}

std::vector<std::string> ImageFolder::badFiles() const
{
    std::lock_guard<std::mutex> lock(m_badMutex);
    return m_badOrder;
}

// Remembers a file that failed; returns false when the tolerance is used up.
bool ImageFolder::markBad(int64_t index, const std::string& why) const
{
    std::lock_guard<std::mutex> lock(m_badMutex);
    if (m_bad.insert(index).second) {
        m_badOrder.push_back(m_files[static_cast<size_t>(index)]);
        std::fprintf(stderr, "warning: skipping an unreadable training image: %s\n", why.c_str());
    }
    return static_cast<int64_t>(m_bad.size()) <= maxBadFiles();
}

bool ImageFolder::isBad(int64_t index) const
{
    std::lock_guard<std::mutex> lock(m_badMutex);
    return m_bad.count(index) > 0;
}

train::Sample ImageFolder::get(int64_t index) const
{
    const auto first = static_cast<size_t>(index);
    const auto& path = m_files.at(first);
    const int64_t label = m_labels[first];
    // A file that cannot be decoded is reported once and replaced by the next readable image of
    // the same class (files of a class are contiguous), so that one bad file does not end an
    // epoch; many bad files mean a broken folder, and that stops training with the list.
    std::string firstError;
    int64_t cursor = index;
    for (int64_t tries = 0; tries < size(); ++tries) {
        if (!isBad(cursor)) {
            try {
                return {decode(m_files[static_cast<size_t>(cursor)]), label};
            } catch (const train::DataError& e) {
                if (firstError.empty())
                    firstError = e.what();
                if (!markBad(cursor, e.what()))
                    throw train::DataError(m_root + ": " + std::to_string(badFiles().size()) +
                                           " images cannot be read (more than the " + std::to_string(maxBadFiles()) +
                                           " tolerated), e.g. " + firstError);
            }
        }
        // Next file of the same class, wrapping around inside the class.
        ++cursor;
        if (cursor >= size() || m_labels[static_cast<size_t>(cursor)] != label) {
            cursor = index;
            while (cursor > 0 && m_labels[static_cast<size_t>(cursor - 1)] == label)
                --cursor;
        }
        if (cursor == index)
            break;
    }
    throw train::DataError(path + ": no readable image left in class '" + m_classes[static_cast<size_t>(label)] + "'" +
                           (firstError.empty() ? std::string() : " (" + firstError + ")"));
}

std::string ImageFolder::description() const
{
    return "image folder " + m_root + " (" + std::to_string(m_files.size()) + " images, " +
           std::to_string(m_classes.size()) + " classes)";
}

}  // namespace fec::datasets
