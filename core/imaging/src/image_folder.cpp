#include "fec/imaging/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>

#include "fec/imaging/image.h"

namespace fs = std::filesystem;

namespace fec::imaging {

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

} // namespace

ImageFolder::ImageFolder(const std::string& root, std::vector<std::string> classNames) : m_root(root)
{
    std::error_code ec;
    if (!fs::is_directory(root, ec))
        throw train::DataError(root + ": not a folder");
    const bool fixedClasses = !classNames.empty();
    m_classes = fixedClasses ? std::move(classNames) : classFolders(root);
    if (m_classes.empty())
        throw train::DataError(root + ": no class folders (expected ROOT/<class>/<image>)");
    if (fixedClasses) {
        for (const auto& name : classFolders(root))
            if (std::find(m_classes.begin(), m_classes.end(), name) == m_classes.end())
                throw train::DataError(root + ": class folder '" + name + "' is not one of the training classes");
    }
    std::vector<std::string> empty;
    for (size_t c = 0; c < m_classes.size(); ++c) {
        const auto folder = fs::path(root) / m_classes[c];
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

train::Sample ImageFolder::get(int64_t index) const
{
    const auto& path = m_files.at(static_cast<size_t>(index));
    const auto ext = lowerExtension(path);
    cv::Mat decoded; // BGR from imread, RGB from loadImageRgb
    bool reversed = true;
    try {
        if (ext == ".jpg" || ext == ".jpeg") {
            // One decode, EXIF orientation applied; JPEG has no alpha to composite.
            decoded = cv::imread(path, cv::IMREAD_COLOR);
            if (decoded.empty())
                throw ImageError(path + ": not a readable image (truncated or corrupt)");
        } else {
            decoded = loadImageRgb(path); // alpha over white, 16-bit scaled, like `fec predict`
            reversed = false;
        }
    } catch (const ImageError& e) {
        throw train::DataError(e.what());
    } catch (const cv::Exception& e) {
        throw train::DataError(path + ": cannot decode the image (" + e.msg + ")");
    }
    // Channel order fixed while copying: cv::cvtColor could start a thread team in a loader thread.
    auto image = at::empty({decoded.rows, decoded.cols, 3}, at::kByte);
    auto* out = image.data_ptr<uint8_t>();
    for (int y = 0; y < decoded.rows; ++y) {
        const auto* row = decoded.ptr<uint8_t>(y);
        for (int x = 0; x < decoded.cols; ++x) {
            const auto* p = row + 3 * x;
            auto* q = out + (static_cast<size_t>(y) * decoded.cols + x) * 3;
            q[0] = reversed ? p[2] : p[0];
            q[1] = p[1];
            q[2] = reversed ? p[0] : p[2];
        }
    }
    return {image, m_labels[static_cast<size_t>(index)]};
}

std::string ImageFolder::description() const
{
    return "image folder " + m_root + " (" + std::to_string(m_files.size()) + " images, " +
           std::to_string(m_classes.size()) + " classes)";
}

} // namespace fec::imaging
