#include "fec/train/optim.h"

#include <cmath>

#include <ATen/ATen.h>

namespace fec::train {

bool decays(const std::string& name, const at::Tensor& parameter)
{
    const std::string bias = ".bias";
    const bool isBias = name.size() >= bias.size() && name.compare(name.size() - bias.size(), bias.size(), bias) == 0;
    return parameter.dim() > 1 && !isBias;
}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> parameters, AdamWOptions options) : m_options(options)
{
    TORCH_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1 && options.eps > 0 &&
                    options.weightDecay >= 0,
                "invalid AdamW options");
    at::NoGradGuard noGrad;
    for (auto& [name, p] : parameters) {
        AdamWSlot slot;
        slot.name = name;
        slot.parameter = p;
        slot.decay = decays(name, p);
        slot.expAvg = at::zeros_like(p, at::MemoryFormat::Contiguous);
        slot.expAvgSq = at::zeros_like(p, at::MemoryFormat::Contiguous);
        m_slots.push_back(std::move(slot));
    }
}

void AdamW::step(double lr)
{
    at::NoGradGuard noGrad;
    const auto& o = m_options;
    for (auto& s : m_slots) {
        const auto& grad = s.parameter.grad();
        if (!grad.defined())
            continue;
        ++s.step;
        auto& p = s.parameter;
        // torch.optim.AdamW (single-tensor path), in the same order of operations.
        if (s.decay && o.weightDecay != 0.0)
            p.mul_(1.0 - lr * o.weightDecay);
        s.expAvg.lerp_(grad, 1.0 - o.beta1);
        s.expAvgSq.mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
        const double biasCorrection1 = 1.0 - std::pow(o.beta1, static_cast<double>(s.step));
        const double biasCorrection2 = 1.0 - std::pow(o.beta2, static_cast<double>(s.step));
        const double stepSize = lr / biasCorrection1;
        auto denom = (s.expAvgSq.sqrt() / std::sqrt(biasCorrection2)).add_(o.eps);
        p.addcdiv_(s.expAvg, denom, -stepSize);
    }
}

void AdamW::zeroGrad()
{
    for (auto& s : m_slots)
        s.parameter.mutable_grad() = at::Tensor();
}

std::vector<at::Tensor> AdamW::stateTensors()
{
    std::vector<at::Tensor> out;
    std::vector<int64_t> steps;
    for (auto& s : m_slots) {
        out.push_back(s.expAvg);
        out.push_back(s.expAvgSq);
        steps.push_back(s.step);
    }
    out.push_back(at::tensor(steps, at::kLong));
    return out;
}

void AdamW::setSteps(const at::Tensor& steps)
{
    TORCH_CHECK(steps.numel() == static_cast<int64_t>(m_slots.size()), "step count mismatch");
    auto cpu = steps.to(at::kCPU).contiguous();
    const auto* p = cpu.data_ptr<int64_t>();
    for (size_t i = 0; i < m_slots.size(); ++i)
        m_slots[i].step = p[i];
}

double CosineSchedule::lrAt(int64_t step) const
{
    if (warmupSteps > 0 && step < warmupSteps)
        return warmupLr + (baseLr - warmupLr) * static_cast<double>(step) / static_cast<double>(warmupSteps);
    const double span = static_cast<double>(std::max<int64_t>(totalSteps - warmupSteps, 1));
    const double t = std::clamp(static_cast<double>(step - warmupSteps) / span, 0.0, 1.0);
    const double floor = std::min(minLr, baseLr);
    return floor + 0.5 * (baseLr - floor) * (1.0 + std::cos(M_PI * t));
}

ModelEma::ModelEma(FecModelImpl& model, double decay) : m_decay(decay)
{
    TORCH_CHECK(decay > 0.0 && decay < 1.0, "EMA decay must be in (0, 1), got ", decay);
    m_model = FecModel(model.config());
    m_model->eval();
    at::NoGradGuard noGrad;
    auto source = model.named_parameters();
    for (auto& p : m_model->named_parameters()) {
        const auto* src = source.find(p.key());
        TORCH_CHECK(src, "EMA: parameter ", p.key(), " missing");
        p.value().copy_(*src);
        p.value().set_requires_grad(false);
        m_source.push_back(*src);
    }
    m_model->to(model.parameters().front().device());
    for (auto& p : m_model->parameters())
        m_ema.push_back(p);
}

void ModelEma::update()
{
    at::NoGradGuard noGrad;
    for (size_t i = 0; i < m_ema.size(); ++i)
        m_ema[i].lerp_(m_source[i], 1.0 - m_decay);
}

double clipGradNorm(const std::vector<at::Tensor>& parameters, double maxNorm)
{
    at::NoGradGuard noGrad;
    std::vector<at::Tensor> norms;
    for (const auto& p : parameters)
        if (p.grad().defined())
            norms.push_back(p.grad().norm(2).to(at::kDouble));
    if (norms.empty())
        return 0.0;
    const double total = at::stack(norms).norm(2).item<double>();
    const double coef = maxNorm / (total + 1e-6);
    if (coef < 1.0)
        for (const auto& p : parameters)
            if (p.grad().defined())
                p.grad().mul_(coef);
    return total;
}

}  // namespace fec::train
