#pragma once

// torchvision's ImageFolder layout as a training dataset: ROOT/<class>/<image>, classes in
// sorted folder-name order, images decoded with OpenCV in the loader threads.

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fec/train/dataset.h"

namespace fec::datasets {

/// One sub-folder per class holding jpg/png (and the other formats OpenCV decodes) images,
/// searched recursively inside each class folder.
class ImageFolder : public train::Dataset {
public:
    /// Lists `root`. With `classNames` given, those folders are used in that order (a validation
    /// folder must follow the training set's classes; a class without images is allowed there).
    /// Throws train::DataError naming the folder when it has no class folders or no images.
    explicit ImageFolder(const std::string& root, std::vector<std::string> classNames = {});

    /// True when `root` has at least one sub-folder holding an image file.
    static bool looksLikeImageFolder(const std::string& root);

    int64_t size() const override { return static_cast<int64_t>(m_files.size()); }
    /// Decodes to [H, W, 3] uint8 RGB. A file that cannot be decoded (corrupt, truncated, over
    /// the pixel limit, ...) is reported once on stderr, remembered, and replaced by the next
    /// readable image of the same class. Throws train::DataError naming the folder once more
    /// files than the tolerance are bad, or naming the file when its whole class is unreadable.
    train::Sample get(int64_t index) const override;
    int64_t label(int64_t index) const override { return m_labels.at(static_cast<size_t>(index)); }
    std::vector<std::string> classNames() const override { return m_classes; }
    std::string description() const override;

    const std::vector<std::string>& files() const { return m_files; }

    /// Files found unreadable so far, in the order they were met.
    std::vector<std::string> badFiles() const;
    /// Tolerate up to max(count, fraction x size()) unreadable files (default: 10 or 5%).
    void setBadFileTolerance(int64_t count, double fraction);
    int64_t maxBadFiles() const;

private:
    at::Tensor decode(const std::string& path) const;
    bool markBad(int64_t index, const std::string& why) const;
    bool isBad(int64_t index) const;

    std::string m_root;
    std::vector<std::string> m_classes;
    std::vector<std::string> m_files;
    std::vector<int64_t> m_labels;
    int64_t m_maxBadFiles = 10;
    double m_maxBadFraction = 0.05;
    mutable std::mutex m_badMutex;
    mutable std::set<int64_t> m_bad;
    mutable std::vector<std::string> m_badOrder;
};

}  // namespace fec::datasets
