#pragma once

// The FEC network in LibTorch. Registered module and parameter names equal the PyTorch key
// paths of fec-model.md ("network.3.conv_skip.weight"): they are the checkpoint schema.

#include <map>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "fec/config.h"

namespace fec {

/// What a ClusterPool did, for every image of the batch (CPU tensors).
struct PoolTrace {
    int networkIndex = 0;        ///< 1, 3 or 5
    int64_t inH = 0, inW = 0;    ///< input grid (positions)
    int64_t outH = 0, outW = 0;  ///< centre grid
    at::Tensor assign;           ///< [B, N_in] int64: centre (row-major on the out grid) of each input position
    at::Tensor similarity;       ///< [B, N_in] float: cosine to the chosen centre
    at::Tensor margin;           ///< [B, N_in] float: best minus second-best cosine
    at::Tensor keyCentres;       ///< [B, M, C_out] float: pooled conv_f features (Kc)
    at::Tensor representatives;  ///< [B, M, C_out] float: (Vc + sum of assigned V) / (1 + count)
};

/// What a ClusterBlock's token mixer did (CPU tensors).
struct BlockTrace {
    int stage = 0, block = 0;       ///< network index is 2*stage
    int64_t height = 0, width = 0;  ///< position grid of the stage
    int heads = 0;
    int proposalW = 0, proposalH = 0, foldW = 1, foldH = 1;
    at::Tensor assign;      ///< [B, heads, N] int64: centre index within the region's proposal grid
    at::Tensor similarity;  ///< [B, heads, N] float: sigmoid similarity to the chosen centre
    at::Tensor margin;      ///< [B, heads, N] float: best minus second-best sigmoid similarity
};

/// What to record during a traced forward.
struct TraceOptions {
    bool pools = true;
    bool blocks = true;
    bool features = false;  ///< every intermediate tensor by reference name ("network.2.1", ...)
};

/// Result of a traced forward; all tensors on the CPU and owned by the caller.
struct Trace {
    at::Tensor logits;                           ///< [B, classes] (undefined for backbones)
    std::vector<at::Tensor> denseFeatures;       ///< fork_feat outputs (norm0, norm2, norm4, norm6)
    std::vector<PoolTrace> pools;                ///< network.1, .3, .5 in order
    std::vector<BlockTrace> blocks;              ///< every block, stage-major
    std::map<std::string, at::Tensor> features;  ///< "patch_embed", "network.<i>", "network.<i>.<j>",
                                                 ///< "network.<i>.<j>.token_mixer", "pre_logits"
    /// [B, D3, h, w] the last stage's output, the classifier's input (undefined for backbones):
    /// position j = row * w + col is final cluster j, whose pixels the last pool level names.
    at::Tensor finalMap;
};

namespace detail {
struct Recorder;
}

/// Clustering-based feature encoding (token_mixer).
class ClusterImpl : public torch::nn::Module {
public:
    ClusterImpl(int dim, int heads, int headDim, int proposalW, int proposalH, int foldW, int foldH);
    at::Tensor forward(const at::Tensor& x, BlockTrace* trace = nullptr);
    /// Training-mode forward on tokens [B, H, W, C] (all heads at once, autograd-friendly):
    /// scale * proj(mix(t * gamma + beta)), with the optional per-channel input affine
    /// (gamma, beta) and output scale folded into the weights. Returns tokens [B, H, W, C].
    at::Tensor forwardTokens(const at::Tensor& t, const at::Tensor& gamma, const at::Tensor& beta,
                             const at::Tensor& scale);

private:
    at::Tensor forwardTraining(const at::Tensor& x);

    int m_heads, m_headDim, m_proposalW, m_proposalH, m_foldW, m_foldH;
    at::Tensor m_f, m_fBias, m_v, m_vBias, m_proj, m_projBias, m_alpha, m_beta;
    torch::nn::Module* m_fModule;
    torch::nn::Module* m_vModule;
    torch::nn::Module* m_projModule;
};
TORCH_MODULE(Cluster);

/// One encoding block: GroupNorm, Cluster, layer scale; GroupNorm, MLP, layer scale.
class ClusterBlockImpl : public torch::nn::Module {
public:
    ClusterBlockImpl(int dim, int hidden, int heads, int headDim, int proposalW, int proposalH, int foldW, int foldH);
    at::Tensor forward(const at::Tensor& x, BlockTrace* trace = nullptr, at::Tensor* mixerOut = nullptr);
    /// Stochastic depth for both residual branches, applied only in training mode.
    void setDropPath(double rate);
    double dropPath() const { return m_dropPath; }

private:
    at::Tensor forwardTraining(const at::Tensor& x);

    double m_dropPath = 0.0;
    Cluster m_mixer{nullptr};
    at::Tensor m_norm1W, m_norm1B, m_norm2W, m_norm2B, m_scale1, m_scale2;
    at::Tensor m_fc1W, m_fc1B, m_fc2W, m_fc2B;
};
TORCH_MODULE(ClusterBlock);

/// Clustering-based feature pooling between stages (halves H and W).
class ClusterPoolImpl : public torch::nn::Module {
public:
    ClusterPoolImpl(int inDim, int outDim, int foldW, int foldH);
    at::Tensor forward(const at::Tensor& x, PoolTrace* trace = nullptr);

private:
    at::Tensor forwardTraining(const at::Tensor& x);

    int m_foldW, m_foldH;
    at::Tensor m_fW, m_fB, m_vW, m_vB, m_skipW, m_skipB, m_normW, m_normB;
};
TORCH_MODULE(ClusterPool);

/// The whole network. Parameters are named exactly like the PyTorch state_dict keys.
class FecModelImpl : public torch::nn::Module {
public:
    explicit FecModelImpl(const FecConfig& config);

    /// Plain forward: logits [B, classes] (or the last dense feature for a backbone).
    /// `x`: [B, inChans, H, W] normalised images; H and W multiples of config().sizeMultiple().
    at::Tensor forward(const at::Tensor& x);
    /// Forward that also records what every clustering step did (see Trace).
    Trace forwardTraced(const at::Tensor& x, const TraceOptions& options = {});
    /// The network split at a pyramid level (1..3): forwardUntil returns the output of ClusterPool
    /// `level` ([B, dims[level], h, w], on x's device), forwardFrom runs the rest of the network on
    /// such a tensor (possibly edited) and returns logits [B, classes]. forwardFrom(l,
    /// forwardUntil(x, l)) equals forward(x). Classification models only for forwardFrom.
    at::Tensor forwardUntil(const at::Tensor& x, int level);
    at::Tensor forwardFrom(int level, const at::Tensor& poolOutput);
    /// The classifier's parameters: GroupNorm `norm` (weight, bias [D3]) and `head` (weight
    /// [classes, D3], bias [classes]); undefined tensors for a backbone.
    at::Tensor normWeight() const { return m_normW; }
    at::Tensor normBias() const { return m_normB; }
    at::Tensor headWeight() const { return m_headW; }
    at::Tensor headBias() const { return m_headB; }

    const FecConfig& config() const { return m_config; }
    /// Stochastic depth for training (identity in eval mode): block k of the K blocks (all
    /// stages in order) drops its residual branches per sample with probability
    /// rate * k / (K - 1), like the authors' linspace(0, drop_path_rate). 0 disables it.
    void setDropPath(double rate);
    double dropPath() const { return m_dropPath; }
    /// Number of parameters.
    int64_t parameterCount() const;

private:
    at::Tensor run(const at::Tensor& x, Trace* trace, const TraceOptions& options);

    FecConfig m_config;
    double m_dropPath = 0.0;
    at::Tensor m_embedW, m_embedB;
    std::vector<ClusterBlock> m_blocks[4];
    std::vector<ClusterPool> m_pools;
    at::Tensor m_normW, m_normB, m_headW, m_headB;
    std::vector<at::Tensor> m_forkNormW, m_forkNormB;
};
TORCH_MODULE(FecModel);

/// Appends the two position channels (row r/(H-1) - 0.5, column c/(W-1) - 0.5) after the image
/// channels: [B, C, H, W] -> [B, C + 2, H, W].
at::Tensor addPositionChannels(const at::Tensor& x);

}  // namespace fec
