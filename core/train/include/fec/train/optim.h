#pragma once

// AdamW with parameter groups (PyTorch's torch.optim.AdamW arithmetic), the cosine learning-rate
// schedule with linear warm-up (per optimizer step), and an exponential moving average of weights.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "fec/model.h"

namespace fec::train {

struct AdamWOptions {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weightDecay = 0.05;
};

/// Whether a parameter is decayed: timm's rule (no decay for 1-D tensors and biases: norms,
/// biases, layer scales, sim_alpha, sim_beta).
bool decays(const std::string& name, const at::Tensor& parameter);

/// One parameter and its AdamW state.
struct AdamWSlot {
    std::string name;
    at::Tensor parameter;
    bool decay = true;
    int64_t step = 0;     ///< updates applied (0: never had a gradient)
    at::Tensor expAvg;    ///< first moment (same shape as the parameter)
    at::Tensor expAvgSq;  ///< second moment
};

/// torch.optim.AdamW (amsgrad off, maximize off). Parameters whose .grad is undefined are
/// skipped entirely, as PyTorch does: no weight decay, no update, no state change.
class AdamW {
public:
    /// `parameters`: the trainable (requires_grad) parameters by name.
    AdamW(std::vector<std::pair<std::string, at::Tensor>> parameters, AdamWOptions options);

    /// One update with learning rate `lr`.
    void step(double lr);
    /// Drops every gradient (set_to_none, PyTorch's default).
    void zeroGrad();

    const AdamWOptions& options() const { return m_options; }
    std::vector<AdamWSlot>& slots() { return m_slots; }
    const std::vector<AdamWSlot>& slots() const { return m_slots; }
    /// Every state tensor (moments, then steps as one int64 tensor) in a fixed order, for
    /// broadcasting the state of rank 0.
    std::vector<at::Tensor> stateTensors();
    /// Writes back the steps after stateTensors()' last tensor was overwritten.
    void setSteps(const at::Tensor& steps);

private:
    AdamWOptions m_options;
    std::vector<AdamWSlot> m_slots;
};

/// Learning rate at each optimizer step: linear warm-up from `warmupLr` to `baseLr` over
/// `warmupSteps`, then a half cosine from `baseLr` down to `minLr` at `totalSteps`.
struct CosineSchedule {
    double baseLr = 1e-3, minLr = 1e-5, warmupLr = 1e-6;
    int64_t warmupSteps = 0, totalSteps = 1;
    /// Learning rate for the update that follows `step` completed updates.
    double lrAt(int64_t step) const;
};

/// Exponential moving average of a model's parameters (timm's ModelEmaV2): after each
/// optimizer step, ema = decay * ema + (1 - decay) * parameter.
class ModelEma {
public:
    /// Starts from a copy of `model`'s parameters; `model` must outlive this object.
    ModelEma(FecModelImpl& model, double decay);
    /// Moves the average towards the model's current parameters.
    void update();
    FecModel& model() { return m_model; }
    double decay() const { return m_decay; }

private:
    FecModel m_model{nullptr};
    double m_decay;
    std::vector<at::Tensor> m_ema, m_source;
};

/// Scales all gradients so their global L2 norm is at most `maxNorm` (torch's
/// clip_grad_norm_); returns the norm before clipping.
double clipGradNorm(const std::vector<at::Tensor>& parameters, double maxNorm);

}  // namespace fec::train
