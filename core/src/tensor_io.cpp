#include "fec/tensor_io.h"

#include <cstring>
#include <stdexcept>

#include <ATen/ATen.h>

namespace fec {

namespace {

struct TypeName {
    const char* descr;
    at::ScalarType type;
};

constexpr TypeName kTypes[] = {
    {"<f4", at::kFloat}, {"<f8", at::kDouble}, {"<i8", at::kLong}, {"<i4", at::kInt},
    {"<i2", at::kShort}, {"|i1", at::kChar},   {"|u1", at::kByte}, {"|b1", at::kBool},
};

}  // namespace

at::Tensor toTensor(const npy::Array& array)
{
    for (const auto& t : kTypes) {
        if (array.descr == t.descr) {
            auto out = at::empty(array.shape, at::TensorOptions().dtype(t.type));
            if (static_cast<size_t>(out.nbytes()) != array.bytes.size())
                throw std::runtime_error("npy payload size does not match its shape");
            if (!array.bytes.empty())
                std::memcpy(out.data_ptr(), array.bytes.data(), array.bytes.size());
            return out;
        }
    }
    throw std::runtime_error("unsupported npy dtype '" + array.descr + "'");
}

npy::Array toNpy(const at::Tensor& tensor)
{
    auto t = tensor.detach().to(at::kCPU).contiguous();
    for (const auto& k : kTypes) {
        if (t.scalar_type() == k.type) {
            npy::Array a;
            a.descr = k.descr;
            a.shape = t.sizes().vec();
            a.bytes.resize(t.nbytes());
            if (!a.bytes.empty())
                std::memcpy(a.bytes.data(), t.data_ptr(), a.bytes.size());
            return a;
        }
    }
    throw std::runtime_error("cannot write tensors of type " + std::string(c10::toString(t.scalar_type())) + " as npy");
}

at::Tensor loadNpy(const std::string& path)
{
    auto array = npy::read(path);
    try {
        return toTensor(array);
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
}

void saveNpy(const std::string& path, const at::Tensor& tensor)
{
    npy::write(path, toNpy(tensor));
}

}  // namespace fec
