#include "fec/train/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

#include <ATen/ATen.h>

#ifdef FEC_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if defined(FEC_WITH_GLOO) && defined(FEC_WITH_NCCL) && defined(USE_C10D_NCCL)
#define FEC_USE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace fec::train {

namespace {

int envInt(const char* name, int fallback, bool* present = nullptr)
{
    const char* text = std::getenv(name);
    if (present)
        *present = text && *text;
    if (!text || !*text)
        return fallback;
    try {
        size_t used = 0;
        const int v = std::stoi(text, &used);
        if (used != std::string(text).size())
            throw std::invalid_argument("");
        return v;
    } catch (const std::exception&) {
        throw std::invalid_argument(std::string(name) + "='" + text + "' is not an integer");
    }
}

// c10::Error's what() carries a C++ backtrace; users get the message only.
[[maybe_unused]] std::string errorText(const std::exception& e)
{
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e))
        return c10->what_without_backtrace();
    return e.what();
}

constexpr int64_t kBucketElements = (25 << 20) / 4;  // about 25 MB of float32, like DDP's buckets

// Groups tensors of one dtype into flat buckets of at most kBucketElements (a single larger
// tensor gets a bucket of its own).
std::vector<std::vector<size_t>> makeBuckets(const std::vector<at::Tensor>& tensors)
{
    std::map<at::ScalarType, std::vector<std::vector<size_t>>> byType;
    std::map<at::ScalarType, int64_t> filled;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto type = tensors[i].scalar_type();
        auto& buckets = byType[type];
        if (buckets.empty() || filled[type] + tensors[i].numel() > kBucketElements) {
            buckets.emplace_back();
            filled[type] = 0;
        }
        buckets.back().push_back(i);
        filled[type] += tensors[i].numel();
    }
    std::vector<std::vector<size_t>> out;
    for (auto& [type, buckets] : byType)
        for (auto& b : buckets)
            out.push_back(std::move(b));
    return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& tensors, const std::vector<size_t>& ids)
{
    std::vector<at::Tensor> parts;
    for (auto i : ids)
        parts.push_back(tensors[i].reshape({-1}));
    return at::cat(parts);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& tensors, const std::vector<size_t>& ids)
{
    int64_t offset = 0;
    for (auto i : ids) {
        const auto n = tensors[i].numel();
        tensors[i].copy_(flat.narrow(0, offset, n).view_as(tensors[i]));
        offset += n;
    }
}

}  // namespace

std::optional<DistOptions> distOptionsFromEnv()
{
    bool hasWorld = false;
    const int world = envInt("WORLD_SIZE", 1, &hasWorld);
    if (!hasWorld)
        return std::nullopt;
    DistOptions o;
    o.worldSize = world;
    o.rank = envInt("RANK", 0);
    o.localRank = envInt("LOCAL_RANK", o.rank);
    if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr)
        o.masterAddr = addr;
    o.masterPort = envInt("MASTER_PORT", 29500);
    if (o.worldSize < 1 || o.rank < 0 || o.rank >= o.worldSize)
        throw std::invalid_argument("RANK=" + std::to_string(o.rank) +
                                    " is not in [0, WORLD_SIZE=" + std::to_string(o.worldSize) + ")");
    if (o.masterPort < 1 || o.masterPort > 65535)
        throw std::invalid_argument("MASTER_PORT=" + std::to_string(o.masterPort) + " is not a TCP port");
    return o;
}

#ifdef FEC_WITH_GLOO

bool glooAvailable()
{
    return true;
}

// The concrete process groups are held (not the ProcessGroup base): their collective calls are
// the same in LibTorch 1.13 and 2.x, where they derive from c10d::Backend instead.
struct DistContext::Impl {
    c10::intrusive_ptr<c10d::TCPStore> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef FEC_USE_NCCL
    c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

    template <typename F> void run(F&& f)
    {
#ifdef FEC_USE_NCCL
        if (nccl)
            return f(*nccl);
#endif
        f(*gloo);
    }
};

DistContext::DistContext(const DistOptions& options, c10::Device device)
    : m_options(options), m_device(device), m_impl(std::make_unique<Impl>())
{
    const auto seconds = std::to_string(options.timeout.count() / 1000);
    try {
        c10d::TCPStoreOptions storeOptions;
        storeOptions.port = static_cast<uint16_t>(options.masterPort);
        storeOptions.isServer = options.rank == 0;
        storeOptions.numWorkers = static_cast<size_t>(options.worldSize);
        storeOptions.waitWorkers = true;
        storeOptions.timeout = options.timeout;
        m_impl->store = c10::make_intrusive<c10d::TCPStore>(options.masterAddr, storeOptions);
    } catch (const std::exception& e) {
        throw DistError("rank " + std::to_string(options.rank) + ": rendezvous at " + options.masterAddr + ":" +
                        std::to_string(options.masterPort) + " failed within " + seconds + " s (are all " +
                        std::to_string(options.worldSize) +
                        " ranks started with the same MASTER_ADDR/MASTER_PORT?): " + errorText(e));
    }
    try {
#ifdef FEC_USE_NCCL
        if (device.is_cuda()) {
            auto ncclOptions = c10d::ProcessGroupNCCL::Options::create();
            ncclOptions->timeout = options.timeout;
            m_impl->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(m_impl->store, options.rank, options.worldSize,
                                                                       ncclOptions);
        } else
#endif
        {
            auto glooOptions = c10d::ProcessGroupGloo::Options::create(options.timeout);
            // Gloo's sockets: the interface named by GLOO_SOCKET_IFNAME (as in PyTorch), loopback
            // for a single-machine job on 127.0.0.1, otherwise the address of this host's name.
            const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
            const bool loopback = options.masterAddr == "localhost" || options.masterAddr.rfind("127.", 0) == 0;
            if (ifname && *ifname)
                glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
            else if (loopback)
                glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
            else
                glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            m_impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(m_impl->store, options.rank, options.worldSize,
                                                                       glooOptions);
        }
    } catch (const std::exception& e) {
        const std::string who =
            options.worldSize == 2 ? "rank " + std::to_string(1 - options.rank) : std::string("another rank");
        throw DistError(who + " stopped responding while the process group was being set up (rank " +
                        std::to_string(options.rank) + ", timeout " + seconds + " s): " + errorText(e));
    }
}

DistContext::~DistContext() = default;

void DistContext::fail(const std::string& operation, const std::exception& error)
{
    // Name the rank that is behind (its heartbeat is older than ours) or that reported a failure.
    std::ostringstream who;
    std::vector<int> behind, failed;
    std::vector<std::string> messages;
    bool storeReachable = true;
    try {
        for (int r = 0; r < m_options.worldSize; ++r) {
            if (r == m_options.rank)
                continue;
            const auto failKey = "fec/failed/" + std::to_string(r);
            if (m_impl->store->check({failKey})) {
                const auto bytes = m_impl->store->get(failKey);
                failed.push_back(r);
                messages.emplace_back(bytes.begin(), bytes.end());
                continue;
            }
            const auto beatKey = "fec/step/" + std::to_string(r);
            int64_t step = -1;
            if (m_impl->store->check({beatKey})) {
                const auto bytes = m_impl->store->get(beatKey);
                step = std::stoll(std::string(bytes.begin(), bytes.end()));
            }
            if (step < m_step)
                behind.push_back(r);
        }
    } catch (const std::exception&) {
        storeReachable = false;
    }
    std::string subject;
    auto list = [](const std::vector<int>& ranks) {
        std::string s = ranks.size() == 1 ? "rank " : "ranks ";
        for (size_t i = 0; i < ranks.size(); ++i)
            s += (i ? ", " : "") + std::to_string(ranks[i]);
        return s;
    };
    if (!failed.empty())
        subject = list(failed) + " failed (" + messages.front() + ")";
    else if (!behind.empty())
        subject = list(behind) + " stopped responding";
    else if (!storeReachable && m_options.rank != 0)
        subject = "rank 0 stopped responding (the rendezvous store it hosts is gone)";
    else if (m_options.worldSize == 2)
        subject = "rank " + std::to_string(1 - m_options.rank) + " stopped responding";
    else
        subject = "another rank stopped responding";
    throw DistError(subject + " during " + operation + " at step " + std::to_string(m_step) + " (rank " +
                    std::to_string(m_options.rank) + ", timeout " + std::to_string(m_options.timeout.count() / 1000) +
                    " s): " + errorText(error));
}

void DistContext::broadcast(const std::vector<at::Tensor>& tensors, int root)
{
    if (tensors.empty())
        return;
    try {
        at::NoGradGuard noGrad;
        for (const auto& ids : makeBuckets(tensors)) {
            std::vector<at::Tensor> flat{flatten(tensors, ids).to(m_device)};
            c10d::BroadcastOptions options;
            options.rootRank = root;
            options.timeout = m_options.timeout;
            m_impl->run([&](auto& group) { group.broadcast(flat, options)->wait(); });
            unflatten(flat[0], tensors, ids);
        }
    } catch (const DistError&) {
        throw;
    } catch (const std::exception& e) {
        fail("broadcast", e);
    }
}

std::vector<double> DistContext::allReduceGradients(const std::vector<at::Tensor>& parameters,
                                                    const std::vector<double>& extras, int64_t step)
{
    m_step = step;
    try {
        const auto text = std::to_string(step);
        m_impl->store->set("fec/step/" + std::to_string(m_options.rank),
                           std::vector<uint8_t>(text.begin(), text.end()));
    } catch (const std::exception& e) {
        fail("the heartbeat", e);
    }
    at::NoGradGuard noGrad;
    std::vector<at::Tensor> grads;
    for (const auto& p : parameters)
        if (p.grad().defined())
            grads.push_back(p.grad());
    // The extras ride along in a float64 bucket of their own.
    auto extra = at::tensor(extras, at::kDouble);
    std::vector<double> summed;
    try {
        auto buckets = makeBuckets(grads);
        for (const auto& ids : buckets) {
            std::vector<at::Tensor> flat{flatten(grads, ids)};
            c10d::AllreduceOptions options;
            options.timeout = m_options.timeout;
            m_impl->run([&](auto& group) { group.allreduce(flat, options)->wait(); });
            flat[0].div_(m_options.worldSize);
            unflatten(flat[0], grads, ids);
        }
        std::vector<at::Tensor> e{extra.to(m_device)};
        c10d::AllreduceOptions options;
        options.timeout = m_options.timeout;
        m_impl->run([&](auto& group) { group.allreduce(e, options)->wait(); });
        auto cpu = e[0].to(at::kCPU);
        summed.assign(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
    } catch (const DistError&) {
        throw;
    } catch (const std::exception& e) {
        fail("the gradient all-reduce", e);
    }
    return summed;
}

std::vector<double> DistContext::allReduceSum(const std::vector<double>& values)
{
    try {
        std::vector<at::Tensor> t{at::tensor(values, at::kDouble).to(m_device)};
        c10d::AllreduceOptions options;
        options.timeout = m_options.timeout;
        m_impl->run([&](auto& group) { group.allreduce(t, options)->wait(); });
        auto cpu = t[0].to(at::kCPU);
        return {cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel()};
    } catch (const DistError&) {
        throw;
    } catch (const std::exception& e) {
        fail("an all-reduce", e);
    }
}

void DistContext::barrier()
{
    try {
        c10d::BarrierOptions options;
        options.timeout = m_options.timeout;
        m_impl->run([&](auto& group) { group.barrier(options)->wait(); });
    } catch (const std::exception& e) {
        fail("a barrier", e);
    }
}

void DistContext::reportFailure(const std::string& message)
{
    try {
        m_impl->store->set("fec/failed/" + std::to_string(m_options.rank),
                           std::vector<uint8_t>(message.begin(), message.end()));
    } catch (const std::exception&) {
        // The store may be the thing that failed; the others then time out on their own.
    }
}

#else  // no Gloo headers at build time

bool glooAvailable()
{
    return false;
}

struct DistContext::Impl {};

DistContext::DistContext(const DistOptions& options, c10::Device device) : m_options(options), m_device(device)
{
    throw DistError("this build of fec has no multi-process support (Gloo headers were missing at build time: "
                    "install libgloo-dev and rebuild)");
}

DistContext::~DistContext() = default;
void DistContext::fail(const std::string& operation, const std::exception& error)
{
    throw DistError(operation + ": " + error.what());
}
void DistContext::broadcast(const std::vector<at::Tensor>&, int) {}
std::vector<double> DistContext::allReduceGradients(const std::vector<at::Tensor>&, const std::vector<double>& extras,
                                                    int64_t)
{
    return extras;
}
std::vector<double> DistContext::allReduceSum(const std::vector<double>& values)
{
    return values;
}
void DistContext::barrier() {}
void DistContext::reportFailure(const std::string&) {}

#endif

}  // namespace fec::train
