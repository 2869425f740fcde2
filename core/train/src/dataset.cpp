#include "fec/train/dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>

#include <zlib.h>

#include <ATen/ATen.h>

#include "fec/train/random.h"

namespace fs = std::filesystem;

namespace fec::train {

namespace {

// Largest IDX array read (Fashion-MNIST's training images take 47 MB). The header's claim is
// checked against it before anything is allocated, and no more than the claim is decompressed.
constexpr int64_t kMaxIdxBytes = int64_t(1) << 28;

// gzopen reads gzip streams and passes plain files through unchanged.
class GzFile {
public:
    explicit GzFile(const std::string& path) : m_path(path)
    {
        std::error_code ec;
        if (!fs::is_regular_file(path, ec))
            throw DataError(path + ": no such file");
        m_file = gzopen(path.c_str(), "rb");
        if (!m_file)
            throw DataError(path + ": cannot open (" + std::strerror(errno) + ")");
        gzbuffer(m_file, 1 << 17);
    }
    ~GzFile()
    {
        if (m_file)
            gzclose(m_file);
    }
    GzFile(const GzFile&) = delete;
    GzFile& operator=(const GzFile&) = delete;

    // Reads up to `size` bytes; returns how many were read (less at the end of the data).
    size_t read(uint8_t* out, size_t size)
    {
        size_t done = 0;
        while (done < size) {
            const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - done, 1u << 24));
            const int got = gzread(m_file, out + done, chunk);
            if (got < 0) {
                int code = 0;
                const char* message = gzerror(m_file, &code);
                throw DataError(m_path + ": corrupt or truncated gzip data (" + (message ? message : "zlib error") +
                                ")");
            }
            if (got == 0)
                break;
            done += static_cast<size_t>(got);
        }
        // A gzip stream cut short reads as a short count; zlib flags it as an error.
        int code = Z_OK;
        const char* message = gzerror(m_file, &code);
        if (code != Z_OK && code != Z_STREAM_END)
            throw DataError(m_path + ": corrupt or truncated gzip data (" + (message ? message : "zlib error") + ")");
        return done;
    }

private:
    std::string m_path;
    gzFile m_file = nullptr;
};

std::string idxPath(const std::string& folder, const std::string& stem)
{
    const auto gz = (fs::path(folder) / (stem + ".gz")).string();
    std::error_code ec;
    if (fs::exists(gz, ec))
        return gz;
    const auto raw = (fs::path(folder) / stem).string();
    if (fs::exists(raw, ec))
        return raw;
    return gz;  // reported as missing by the reader
}

std::string stemFor(FashionMnist::Split split, bool images)
{
    const std::string prefix = split == FashionMnist::Split::Train ? "train" : "t10k";
    return prefix + (images ? "-images-idx3-ubyte" : "-labels-idx1-ubyte");
}

IdxArray readIdxData(const std::string& path, int64_t maxItems)
{
    GzFile file(path);
    uint8_t header[4];
    if (file.read(header, 4) != 4)
        throw DataError(path + ": truncated IDX file (no header)");
    if (header[0] != 0 || header[1] != 0)
        throw DataError(path + ": not an IDX file (bad magic number " + std::to_string(header[0]) + "," +
                        std::to_string(header[1]) + "," + std::to_string(header[2]) + "," + std::to_string(header[3]) +
                        ")");
    if (header[2] != 0x08)
        throw DataError(path + ": unsupported IDX element type 0x" + [&] {
            char buf[8];
            std::snprintf(buf, sizeof buf, "%02x", header[2]);
            return std::string(buf);
        }() + " (only unsigned bytes, 0x08)");
    const int ndim = header[3];
    if (ndim < 1 || ndim > 4)
        throw DataError(path + ": not an IDX file (" + std::to_string(ndim) + " dimensions)");
    IdxArray out;
    for (int i = 0; i < ndim; ++i) {
        uint8_t b[4];
        if (file.read(b, 4) != 4)
            throw DataError(path + ": truncated IDX file (header ends early)");
        const int64_t dim = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]);
        if (dim <= 0)
            throw DataError(path + ": IDX dimension " + std::to_string(i) + " is " + std::to_string(dim));
        out.dims.push_back(dim);
    }
    // What would be read: the items asked for (all by default) times the bytes of one item,
    // checked against the limit before anything is allocated. Each factor is below 2^32 and the
    // running product stays below the limit, so nothing overflows.
    int64_t items = out.dims[0];
    if (maxItems > 0 && maxItems < items)
        items = maxItems;
    std::string claim = std::to_string(out.dims[0]);
    for (int i = 1; i < ndim; ++i)
        claim += " x " + std::to_string(out.dims[static_cast<size_t>(i)]);
    int64_t bytes = items;
    for (int i = 1; i < ndim && bytes <= kMaxIdxBytes; ++i)
        bytes = out.dims[static_cast<size_t>(i)] > kMaxIdxBytes ? kMaxIdxBytes + 1
                                                                : bytes * out.dims[static_cast<size_t>(i)];
    if (bytes > kMaxIdxBytes)
        throw DataError(path + ": the IDX header claims " + claim + " bytes" +
                        (items < out.dims[0] ? " (" + std::to_string(items) + " items read)" : std::string()) +
                        ", more than the limit of " + std::to_string(kMaxIdxBytes) + " bytes (" +
                        std::to_string(kMaxIdxBytes >> 20) + " MiB)");
    const auto want = static_cast<size_t>(bytes);
    // Grow the buffer as the data arrives (doubling), so that a short or lying file costs memory
    // in proportion to what it really holds. No more than `want` bytes are ever decompressed: a
    // gzip stream that goes on past the claim (a bomb) is not read further.
    size_t got = 0;
    while (got < want) {
        const size_t step = std::min(want - got, std::max<size_t>(size_t(1) << 16, got));
        out.data.resize(got + step);
        const size_t n = file.read(out.data.data() + got, step);
        got += n;
        if (n < step)
            break;
    }
    if (got != want)
        throw DataError(path + ": truncated IDX file: expected " + std::to_string(want) + " data bytes, found " +
                        std::to_string(got));
    out.dims[0] = items;
    return out;
}

}  // namespace

IdxArray readIdx(const std::string& path, int64_t maxItems)
{
    try {
        return readIdxData(path, maxItems);
    } catch (const std::bad_alloc&) {
        throw DataError(path + ": out of memory while reading the IDX data");
    }
}

FashionMnist::FashionMnist(const std::string& folder, Split split, int64_t limit) : m_folder(folder), m_split(split)
{
    const auto imagesPath = idxPath(folder, stemFor(split, true));
    const auto labelsPath = idxPath(folder, stemFor(split, false));
    auto images = readIdx(imagesPath, limit);
    auto labels = readIdx(labelsPath, limit);
    if (images.dims.size() != 3)
        throw DataError(imagesPath + ": expected images [N, rows, cols], found " + std::to_string(images.dims.size()) +
                        " dimensions");
    if (labels.dims.size() != 1)
        throw DataError(labelsPath + ": expected labels [N], found " + std::to_string(labels.dims.size()) +
                        " dimensions");
    if (images.dims[0] != labels.dims[0])
        throw DataError(imagesPath + ": " + std::to_string(images.dims[0]) + " images but " + labelsPath + " has " +
                        std::to_string(labels.dims[0]) + " labels");
    for (size_t i = 0; i < labels.data.size(); ++i)
        if (labels.data[i] >= 10)
            throw DataError(labelsPath + ": label " + std::to_string(labels.data[i]) + " at index " +
                            std::to_string(i) + " is not a Fashion-MNIST class (0-9)");
    m_count = images.dims[0];
    m_rows = images.dims[1];
    m_cols = images.dims[2];
    try {
        m_images = at::empty({m_count, m_rows, m_cols, 1}, at::kByte);
    } catch (const std::exception& e) {
        // std::bad_alloc, or LibTorch's "not enough memory" from its CPU allocator.
        if (!dynamic_cast<const std::bad_alloc*>(&e) && std::string(e.what()).find("memory") == std::string::npos)
            throw;
        throw DataError(imagesPath + ": out of memory while copying " + std::to_string(images.data.size()) +
                        " bytes of images");
    }
    std::memcpy(m_images.data_ptr<uint8_t>(), images.data.data(), images.data.size());
    m_labels = std::move(labels.data);
}

bool FashionMnist::detect(const std::string& folder)
{
    std::error_code ec;
    for (bool images : {true, false}) {
        const auto stem = stemFor(Split::Train, images);
        if (!fs::exists(fs::path(folder) / (stem + ".gz"), ec) && !fs::exists(fs::path(folder) / stem, ec))
            return false;
    }
    return true;
}

std::vector<std::string> FashionMnist::names()
{
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

Sample FashionMnist::get(int64_t index) const
{
    TORCH_CHECK(index >= 0 && index < m_count, "Fashion-MNIST index ", index, " out of range");
    return {m_images[index], static_cast<int64_t>(m_labels[static_cast<size_t>(index)])};
}

int64_t FashionMnist::label(int64_t index) const
{
    TORCH_CHECK(index >= 0 && index < m_count, "Fashion-MNIST index ", index, " out of range");
    return m_labels[static_cast<size_t>(index)];
}

std::string FashionMnist::description() const
{
    return std::string("Fashion-MNIST ") + (m_split == Split::Train ? "train" : "test") + " (" +
           std::to_string(m_count) + " images " + std::to_string(m_rows) + "x" + std::to_string(m_cols) + ", " +
           m_folder + ")";
}

SubsetDataset::SubsetDataset(DatasetPtr base, std::vector<int64_t> indices, std::string name)
    : m_base(std::move(base)), m_indices(std::move(indices)), m_name(std::move(name))
{
    for (auto i : m_indices)
        if (i < 0 || i >= m_base->size())
            throw std::invalid_argument("subset index " + std::to_string(i) + " out of range");
}

Sample SubsetDataset::get(int64_t index) const
{
    return m_base->get(m_indices.at(static_cast<size_t>(index)));
}

int64_t SubsetDataset::label(int64_t index) const
{
    return m_base->label(m_indices.at(static_cast<size_t>(index)));
}

std::string SubsetDataset::description() const
{
    return m_name + " (" + std::to_string(m_indices.size()) + " of " + m_base->description() + ")";
}

std::pair<DatasetPtr, DatasetPtr> splitDataset(const DatasetPtr& base, double valFraction, uint64_t seed)
{
    if (!(valFraction > 0.0 && valFraction < 1.0))
        throw std::invalid_argument("the validation fraction must be between 0 and 1 (got " +
                                    std::to_string(valFraction) + ")");
    const int64_t n = base->size();
    const auto valCount = static_cast<int64_t>(std::llround(valFraction * static_cast<double>(n)));
    if (valCount < 1 || valCount >= n)
        throw std::invalid_argument("a validation fraction of " + std::to_string(valFraction) + " of " +
                                    std::to_string(n) + " samples leaves one side empty");
    auto order = epochOrder(n, mixSeed(seed, 0x5b117ull), 0);
    std::vector<int64_t> val(order.begin(), order.begin() + valCount), train(order.begin() + valCount, order.end());
    std::sort(val.begin(), val.end());
    std::sort(train.begin(), train.end());
    return {std::make_shared<SubsetDataset>(base, std::move(train), "train split"),
            std::make_shared<SubsetDataset>(base, std::move(val), "validation split")};
}

DatasetPtr limitDataset(const DatasetPtr& base, int64_t count, uint64_t seed)
{
    if (count <= 0 || count >= base->size())
        return base;
    auto order = epochOrder(base->size(), mixSeed(seed, 0x11317ull), 0);
    order.resize(static_cast<size_t>(count));
    std::sort(order.begin(), order.end());
    return std::make_shared<SubsetDataset>(base, std::move(order), "subset");
}

}  // namespace fec::train
