#pragma once

// Restricted reader and writer for PyTorch's torch.save files (zip and legacy formats).
// Nothing a pickle names is ever called: known globals map to safe builders, anything else
// becomes an inert Object value. Standard library only, so it can be fuzzed on its own.

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fec::pickle {

/// Element type of a tensor storage (from the `torch.*Storage` class a pickle names).
enum class DType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };

/// Size of one element in bytes.
std::size_t dtypeSize(DType dtype);
/// PyTorch storage class name without module, e.g. "FloatStorage".
std::string storageClassName(DType dtype);
/// Short name for messages, e.g. "float32".
std::string dtypeName(DType dtype);

/// Thrown for every malformed, truncated, unsupported or over-limit input. `what()` is a
/// sentence meant for the user (the caller prefixes the file name).
class FormatError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A tensor as the pickle describes it; the bytes live in the Archive's storage of that key.
struct TensorRef {
    std::string storageKey;
    DType dtype = DType::Float32;
    std::string location = "cpu";  ///< device string recorded in the file ("cpu", "cuda:0")
    int64_t storageNumel = 0;      ///< element count of the whole storage
    int64_t offset = 0;            ///< storage offset, in elements
    std::vector<int64_t> sizes;
    std::vector<int64_t> strides;
    bool requiresGrad = false;
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

/// A pickled value. Containers hold shared pointers (a memo may alias one object twice).
struct Value {
    enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Tensor, Global, Object };
    Kind kind = Kind::None;
    bool b = false;
    int64_t i = 0;
    double f = 0.0;
    std::string s;                                    ///< String/Bytes payload
    std::vector<ValuePtr> items;                      ///< List/Tuple items; Object constructor args
    std::vector<std::pair<ValuePtr, ValuePtr>> dict;  ///< Dict entries in insertion order
    bool ordered = false;                             ///< Dict: was a collections.OrderedDict
    TensorRef tensor;                                 ///< Tensor
    std::string module, name;                         ///< Global / Object: the class or function named
    ValuePtr state;                                   ///< Object: state given by BUILD (or nullptr)

    static ValuePtr none();
    static ValuePtr boolean(bool v);
    static ValuePtr integer(int64_t v);
    static ValuePtr real(double v);
    static ValuePtr string(std::string v);
    static ValuePtr list(std::vector<ValuePtr> v = {});
    static ValuePtr tuple(std::vector<ValuePtr> v = {});
    static ValuePtr dictionary(bool ordered = false);
    static ValuePtr tensorRef(TensorRef t);

    bool isStringKeyedDict() const;
    /// Dict lookup by string key; nullptr when absent (or when this is not a Dict).
    ValuePtr get(const std::string& key) const;
    /// Dict: append or replace an entry with a string key.
    void set(const std::string& key, ValuePtr v);
    /// Short human-readable description, e.g. "dict (282 entries)", "argparse.Namespace".
    std::string describe() const;
    /// An inert call of torch.storage._load_from_bytes: bytes that torch.load would read as a
    /// second, nested checkpoint (running its pickle). Never read here.
    bool isNestedPickle() const;
};

/// Raw bytes of one storage record (little-endian), copied out of the file.
struct Storage {
    DType dtype = DType::Float32;
    int64_t numel = 0;
    std::vector<uint8_t> bytes;  ///< numel * dtypeSize(dtype) bytes
};

/// Resource limits applied while reading untrusted files.
struct Limits {
    uint64_t maxFileBytes = 8ull << 30;       ///< refuse larger files outright
    uint64_t maxPickleOps = 50'000'000;       ///< opcodes executed in one pickle
    uint64_t maxContainerItems = 50'000'000;  ///< items across all containers
    uint32_t maxDepth = 512;                  ///< nesting of containers being built (stack/marks)
    uint64_t maxTensorDims = 16;
    uint64_t maxPickleMemory = 1ull << 30;  ///< estimated bytes held by the values of one pickle
    /// All tensors of a pickle together, materialised, may take maxTensorExpansion times the bytes
    /// of its distinct storages plus minTensorBytes (views may share or repeat storage).
    double maxTensorExpansion = 4.0;
    int64_t minTensorBytes = 64ll << 20;
};

enum class ContainerFormat { Zip, Legacy };

/// A decoded torch.save file.
struct Archive {
    ContainerFormat format = ContainerFormat::Zip;
    std::string zipRoot;  ///< top folder inside the zip ("archive", "fec_small_seed0.pth", ...)
    ValuePtr root;
    std::map<std::string, Storage> storages;  ///< by storage key; each record stored once
    std::vector<std::string> ignoredGlobals;  ///< "module.name" of globals turned into opaque values
};

/// Reads a torch.save file from memory. Throws FormatError.
Archive readTorchFile(const std::vector<uint8_t>& data, const Limits& limits = {});
/// Reads a torch.save file from disk. Throws FormatError (and std::runtime_error on I/O errors).
Archive readTorchFile(const std::string& path, const Limits& limits = {});

/// Executes one protocol 0-5 pickle (restricted). `storages` receives persistent-id storages
/// (dtype and numel only; bytes are filled by the container reader). Exposed for tests/fuzzing.
ValuePtr unpickle(const uint8_t* data, std::size_t size, std::map<std::string, Storage>* storages,
                  std::vector<std::string>* ignoredGlobals, const Limits& limits = {}, std::size_t* consumed = nullptr);

/// Serialises `root` as a protocol-2 pickle in PyTorch's zip layout: `<archiveName>/data.pkl`,
/// `<archiveName>/data/<key>` (64-byte aligned), `<archiveName>/version` ("3"). Tensors are
/// written with torch._utils._rebuild_tensor_v2 and `torch.<Type>Storage` persistent ids; Dicts
/// with `ordered` become collections.OrderedDict. Only None/Bool/Int/Float/String/List/Tuple/
/// Dict/Tensor values may appear. `torch.load` in PyTorch reads the result.
std::vector<uint8_t> writeTorchZip(const Value& root, const std::map<std::string, Storage>& storages,
                                   const std::string& archiveName = "archive");

/// Options of the zip writer.
struct ZipWriteOptions {
    bool forceZip64 = false;  ///< ZIP64 records for every entry and the directory (to test readers)
};
/// writeTorchZip with options.
std::vector<uint8_t> writeTorchZip(const Value& root, const std::map<std::string, Storage>& storages,
                                   const std::string& archiveName, const ZipWriteOptions& options);

}  // namespace fec::pickle
