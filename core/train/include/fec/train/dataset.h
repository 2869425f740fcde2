#pragma once

// Labelled image collections the trainer reads: the interface, Fashion-MNIST's IDX files, and
// subsets / seeded splits of any dataset.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace fec::train {

/// A dataset that cannot be read; `what()` names the file or folder and the problem.
class DataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One labelled image.
struct Sample {
    at::Tensor image;   ///< [H, W, C] uint8 (C = 1 or 3), or float in [0, 1]; CPU, contiguous
    int64_t label = 0;  ///< class index in [0, classNames().size())
};

/// A read-only, indexable collection of labelled images. get() and label() must be safe to call
/// from several threads at once (the loader decodes in parallel).
class Dataset {
public:
    virtual ~Dataset() = default;
    virtual int64_t size() const = 0;
    /// Decodes sample `index`; throws DataError naming the file on failure.
    virtual Sample get(int64_t index) const = 0;
    /// The label of sample `index` without decoding it.
    virtual int64_t label(int64_t index) const = 0;
    virtual std::vector<std::string> classNames() const = 0;
    /// One line for logs: "Fashion-MNIST train (60000 images, /usr/share/...)".
    virtual std::string description() const = 0;
    /// How evaluation turns a sample into a model input: "squash" (resize the whole image, for
    /// small fixed-size images such as Fashion-MNIST) or "crop" (resize the shorter side to
    /// S / 0.9 and take the centre, the authors' evaluation).
    virtual std::string preprocess() const { return "crop"; }
};

using DatasetPtr = std::shared_ptr<const Dataset>;

/// The contents of an IDX file (the MNIST family's format).
struct IdxArray {
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;  ///< product(dims) bytes when the element type is uint8
};

/// Reads an IDX file, gzip-compressed (".gz") or raw, with unsigned-byte elements. `maxItems` > 0
/// stops after that many items along the first axis (dims[0] is then the number read).
/// Throws DataError naming the file for a bad magic number, an unsupported element type, a
/// truncated file or a corrupt gzip stream.
IdxArray readIdx(const std::string& path, int64_t maxItems = 0);

/// Fashion-MNIST (70000 28x28 grey images, 10 classes) from its four IDX files.
class FashionMnist : public Dataset {
public:
    enum class Split { Train, Test };

    /// Reads `<folder>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`. `limit` > 0 keeps the
    /// first `limit` images. Throws DataError (naming the file) when they are missing or bad, or
    /// when the image and label files disagree.
    FashionMnist(const std::string& folder, Split split, int64_t limit = 0);

    /// True when `folder` holds the IDX files of at least the training split.
    static bool detect(const std::string& folder);
    /// The ten class names, in label order.
    static std::vector<std::string> names();

    int64_t size() const override { return m_count; }
    Sample get(int64_t index) const override;
    int64_t label(int64_t index) const override;
    std::vector<std::string> classNames() const override { return names(); }
    std::string description() const override;
    std::string preprocess() const override { return "squash"; }

private:
    std::string m_folder;
    Split m_split;
    int64_t m_count = 0, m_rows = 0, m_cols = 0;
    at::Tensor m_images;  ///< [N, rows, cols, 1] uint8
    std::vector<uint8_t> m_labels;
};

/// The samples of `base` at `indices`, in that order.
class SubsetDataset : public Dataset {
public:
    SubsetDataset(DatasetPtr base, std::vector<int64_t> indices, std::string name);
    int64_t size() const override { return static_cast<int64_t>(m_indices.size()); }
    Sample get(int64_t index) const override;
    int64_t label(int64_t index) const override;
    std::vector<std::string> classNames() const override { return m_base->classNames(); }
    std::string description() const override;
    std::string preprocess() const override { return m_base->preprocess(); }
    const std::vector<int64_t>& indices() const { return m_indices; }

private:
    DatasetPtr m_base;
    std::vector<int64_t> m_indices;
    std::string m_name;
};

/// Splits `base` into (train, val) with `valFraction` of the samples in val, by a permutation
/// seeded with `seed` (the same seed always gives the same split). Throws std::invalid_argument
/// unless 0 < valFraction < 1 and both parts are non-empty.
std::pair<DatasetPtr, DatasetPtr> splitDataset(const DatasetPtr& base, double valFraction, uint64_t seed);

/// The first `count` samples of a seeded permutation of `base` (for quick runs); `base` itself
/// when count <= 0 or count >= size.
DatasetPtr limitDataset(const DatasetPtr& base, int64_t count, uint64_t seed);

}  // namespace fec::train
