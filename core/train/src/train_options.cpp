#include "fec/train/train_options.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

namespace fec::train {

namespace {

using json = nlohmann::ordered_json;

std::string toText(int v)
{
    return std::to_string(v);
}
std::string toText(int64_t v)
{
    return std::to_string(v);
}
std::string toText(uint64_t v)
{
    return std::to_string(v);
}
std::string toText(double v)
{
    if (v == std::floor(v) && std::abs(v) < 1e15)
        return std::to_string(static_cast<int64_t>(v));  // "100000", not "1e+05"
    char buffer[64];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, v);  // shortest text that reads back exactly
    return std::string(buffer, r.ptr);
}
std::string toText(bool v)
{
    return v ? "true" : "false";
}
std::string toText(const std::string& v)
{
    return v;
}
std::string toText(const std::vector<int>& v)
{
    std::string s;
    for (size_t i = 0; i < v.size(); ++i)
        s += (i ? "," : "") + std::to_string(v[i]);
    return s;
}

std::string trimmed(const std::string& text)
{
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string::npos)
        return {};
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

template <typename T> T parseNumber(const std::string& raw)
{
    std::string text = trimmed(raw);
    if (!text.empty() && text[0] == '+')
        text.erase(0, 1);
    T v{};
    const auto* end = text.data() + text.size();
    const auto r = std::from_chars(text.data(), end, v);
    if (text.empty() || r.ec != std::errc() || r.ptr != end)
        throw std::invalid_argument("'" + raw + "' is not " +
                                    (std::is_floating_point_v<T> ? "a number"
                                     : std::is_signed_v<T>       ? "an integer"
                                                                 : "a non-negative integer"));
    if constexpr (std::is_floating_point_v<T>)
        if (!std::isfinite(v))
            throw std::invalid_argument("'" + raw + "' is not a finite number");
    return v;
}

void fromText(const std::string& text, int& v)
{
    v = parseNumber<int>(text);
}
void fromText(const std::string& text, int64_t& v)
{
    v = parseNumber<int64_t>(text);
}
void fromText(const std::string& text, uint64_t& v)
{
    v = parseNumber<uint64_t>(text);
}
void fromText(const std::string& text, double& v)
{
    v = parseNumber<double>(text);
}
void fromText(const std::string& raw, bool& v)
{
    const auto text = trimmed(raw);
    if (text == "true" || text == "1" || text == "on" || text == "yes")
        v = true;
    else if (text == "false" || text == "0" || text == "off" || text == "no")
        v = false;
    else
        throw std::invalid_argument("'" + raw + "' is not true or false");
}
void fromText(const std::string& text, std::string& v)
{
    v = text;
}
void fromText(const std::string& text, std::vector<int>& v)
{
    std::vector<int> out;
    if (!trimmed(text).empty()) {
        size_t start = 0;
        while (true) {
            const auto comma = text.find(',', start);
            out.push_back(parseNumber<int>(text.substr(start, comma - start)));
            if (comma == std::string::npos)
                break;
            start = comma + 1;
        }
    }
    v = std::move(out);
}

// A field of TrainOptions reached through a chain of members (&TrainOptions::mix, &MixOptions::prob).
template <auto... Path> auto& fieldOf(TrainOptions& o)
{
    return (o.*....*Path);
}
template <auto... Path> const auto& fieldOf(const TrainOptions& o)
{
    return (o.*....*Path);
}
template <auto... Path> std::string getField(const TrainOptions& o)
{
    return toText(fieldOf<Path...>(o));
}
template <auto... Path> void parseField(TrainOptions& o, const std::string& text)
{
    fromText(text, fieldOf<Path...>(o));
}

template <typename T> constexpr OptionType typeOf()
{
    if constexpr (std::is_same_v<T, int>)
        return OptionType::Int;
    else if constexpr (std::is_same_v<T, int64_t>)
        return OptionType::Int64;
    else if constexpr (std::is_same_v<T, uint64_t>)
        return OptionType::UInt64;
    else if constexpr (std::is_same_v<T, double>)
        return OptionType::Float;
    else if constexpr (std::is_same_v<T, bool>)
        return OptionType::Bool;
    else if constexpr (std::is_same_v<T, std::string>)
        return OptionType::Text;
    else {
        static_assert(std::is_same_v<T, std::vector<int>>, "a type the option table does not know");
        return OptionType::IntList;
    }
}

template <auto... Path>
TrainOption option(std::string flag, std::string key, std::string help, OptionRole role = OptionRole::Recipe)
{
    using T = std::decay_t<decltype(fieldOf<Path...>(std::declval<TrainOptions&>()))>;
    TrainOption r;
    r.flag = std::move(flag);
    r.key = std::move(key);
    r.type = typeOf<T>();
    r.help = std::move(help);
    r.role = role;
    r.get = &getField<Path...>;
    r.parse = &parseField<Path...>;
    return r;
}

TrainOption ranged(TrainOption r, double min, double max)
{
    r.min = min;
    r.max = max;
    return r;
}

std::string weightsText(WeightsChoice w)
{
    switch (w) {
    case WeightsChoice::StateDict:
        return "state_dict";
    case WeightsChoice::Ema:
        return "ema";
    default:
        return "auto";
    }
}

std::vector<TrainOption> buildTable()
{
    using O = TrainOptions;
    using A = AugmentOptions;
    using M = MixOptions;
    const auto run = OptionRole::Run;
    std::vector<TrainOption> t;
    t.push_back(option<&O::checkpoint>("--checkpoint", "/checkpoint",
                                       "start from this checkpoint (fine-tuning; a new head when the classes differ)"));
    TrainOption weights;
    weights.flag = "--weights";
    weights.key = "/weights";
    weights.type = OptionType::Text;
    weights.help = "weights of --checkpoint: auto (EMA when present), state_dict or ema";
    weights.choices = {"auto", "state_dict", "ema"};
    weights.get = [](const TrainOptions& o) { return weightsText(o.weights); };
    weights.parse = [](TrainOptions& o, const std::string& text) { o.weights = parseWeightsChoice(trimmed(text)); };
    t.push_back(weights);
    t.push_back(option<&O::freezeStages>("--freeze-stages", "/freeze_stages",
                                         "comma-separated stages (0-3) whose weights stay fixed"));
    t.push_back(
        option<&O::dropPath>("--drop-path", "/drop_path", "stochastic depth rate of the last block (linear from 0)"));
    t.push_back(option<&O::size>("--size", "/size", "input side in pixels (a multiple of 32)"));
    t.push_back(ranged(option<&O::batch>("--batch", "/batch", "images per process and micro-batch"), 1, 65536));
    t.push_back(ranged(
        option<&O::accum>("--accum", "/accum", "micro-batches per optimizer step (gradient accumulation)"), 1, 4096));
    t.push_back(ranged(option<&O::workers>("--workers", "/workers", "loader threads per process", run), 0, 64));
    t.push_back(option<&O::augment, &A::randomCrop>("", "/augment/random_crop",
                                                    "random resized crop (false: resize the whole image)"));
    t.push_back(option<&O::augment, &A::scaleMin>("--crop-scale", "/augment/scale/0",
                                                  "smallest random-resized-crop area fraction"));
    t.push_back(option<&O::augment, &A::scaleMax>("", "/augment/scale/1", "largest random-resized-crop area fraction"));
    t.push_back(option<&O::augment, &A::ratioMin>("", "/augment/ratio/0", "smallest crop aspect ratio (w / h)"));
    t.push_back(option<&O::augment, &A::ratioMax>("", "/augment/ratio/1", "largest crop aspect ratio (w / h)"));
    t.push_back(option<&O::augment, &A::hflip>("--hflip", "/augment/hflip", "horizontal flip probability"));
    t.push_back(option<&O::augment, &A::eraseProb>("--reprob", "/augment/reprob",
                                                   "random erasing probability (0: off; the authors: 0.25)"));
    t.push_back(option<&O::mix, &M::mixupAlpha>("--mixup", "/mix/mixup", "MixUp alpha (0: off; the authors: 0.8)"));
    t.push_back(option<&O::mix, &M::cutmixAlpha>("--cutmix", "/mix/cutmix", "CutMix alpha (0: off; the authors: 1.0)"));
    t.push_back(option<&O::mix, &M::prob>("", "/mix/prob", "probability of mixing a batch at all"));
    t.push_back(
        option<&O::mix, &M::switchProb>("", "/mix/switch_prob", "with MixUp and CutMix: probability of CutMix"));
    t.push_back(option<&O::mix, &M::smoothing>("--smoothing", "/mix/smoothing", "label smoothing"));
    auto evalResize =
        option<&O::evalResize>("--eval-resize", "/eval_resize",
                               "validation resize: squash or crop (default: squash for Fashion-MNIST, else crop)");
    evalResize.choices = {"squash", "crop"};
    t.push_back(evalResize);
    t.push_back(ranged(option<&O::epochs>("--epochs", "/epochs", "epochs", run), 1, 100000));
    t.push_back(option<&O::maxSteps>("--max-steps", "/max_steps",
                                     "stop after N optimizer steps (the schedule ends there; 0: no limit)", run));
    t.push_back(option<&O::lr>("--lr", "/lr", "peak learning rate (the authors: 1e-3 at a global batch of 1024)"));
    t.push_back(option<&O::minLr>("--min-lr", "/min_lr", "learning rate at the end of the cosine"));
    t.push_back(option<&O::warmupLr>("--warmup-lr", "/warmup_lr", "learning rate at the start of the warm-up"));
    t.push_back(option<&O::warmupEpochs>("--warmup-epochs", "/warmup_epochs", "linear warm-up length in epochs"));
    t.push_back(option<&O::weightDecay>("--weight-decay", "/weight_decay",
                                        "AdamW weight decay (not on norms, biases, layer scales, sim_alpha/beta)"));
    t.push_back(option<&O::beta1>("", "/betas/0", "AdamW beta 1"));
    t.push_back(option<&O::beta2>("", "/betas/1", "AdamW beta 2"));
    t.push_back(option<&O::eps>("", "/eps", "AdamW epsilon"));
    t.push_back(option<&O::clipGrad>("--clip", "/clip_grad", "clip the gradient norm to this value (0: off)"));
    t.push_back(option<&O::emaDecay>("--ema", "/ema_decay",
                                     "keep an EMA of the weights with this decay, e.g. 0.9998 (0: off)"));
    t.push_back(option<&O::seed>("--seed", "/seed", "seed of initialisation, data order and augmentation"));
    t.push_back(
        ranged(option<&O::logEvery>("--log-every", "/log_every", "optimizer steps between train metric lines", run), 1,
               1000000));
    auto tensorboard =
        option<&O::tensorboard>("--no-tensorboard", "/tensorboard", "do not write TensorBoard event files", run);
    tensorboard.switchValue = false;
    t.push_back(tensorboard);
    t.push_back(option<&O::device>("--device", "/device", "cpu, cuda or auto", run));
    auto resume = option<&O::resume>(
        "--resume", "", "continue the run in --out from last.pth.tar (its settings unless given again)", run);
    resume.switchValue = true;
    t.push_back(resume);
    return t;
}

json valueJson(const TrainOption& row, const std::string& text)
{
    switch (row.type) {
    case OptionType::Int:
    case OptionType::Int64:
        return parseNumber<int64_t>(text);
    case OptionType::UInt64:
        return parseNumber<uint64_t>(text);
    case OptionType::Float:
        return parseNumber<double>(text);
    case OptionType::Bool:
        return text == "true";
    case OptionType::IntList: {
        std::vector<int> v;
        fromText(text, v);
        return v;
    }
    case OptionType::Text:
        break;
    }
    return text;
}

// run.json's value as the command line would spell it (numbers of an integer option stored as
// floating point by another writer are accepted when whole).
std::string valueText(const TrainOption& row, const json& v)
{
    switch (row.type) {
    case OptionType::Int:
    case OptionType::Int64:
    case OptionType::UInt64:
        if (v.is_number_float()) {
            const double d = v.get<double>();
            if (d != std::floor(d) || std::abs(d) > 9.0e15)
                throw std::invalid_argument(v.dump() + " is not an integer");
            return toText(static_cast<int64_t>(d));
        }
        if (!v.is_number_integer())
            throw std::invalid_argument(v.dump() + " is not an integer");
        return v.dump();
    case OptionType::Float:
        if (!v.is_number())
            throw std::invalid_argument(v.dump() + " is not a number");
        return toText(v.get<double>());
    case OptionType::Bool:
        return toText(v.get<bool>());
    case OptionType::IntList:
        return toText(v.get<std::vector<int>>());
    case OptionType::Text:
        break;
    }
    return v.get<std::string>();
}

}  // namespace

std::string TrainOption::defaultValue() const
{
    static const TrainOptions defaults;
    return get(defaults);
}

void TrainOption::set(TrainOptions& options, const std::string& text) const
{
    try {
        if (!choices.empty() && std::find(choices.begin(), choices.end(), trimmed(text)) == choices.end()) {
            std::string list;
            for (size_t i = 0; i < choices.size(); ++i)
                list += (i ? ", " : "") + choices[i];
            throw std::invalid_argument("must be one of " + list + " (got '" + text + "')");
        }
        const auto previous = get(options);
        parse(options, text);
        if (min || max) {
            const double v = parseNumber<double>(get(options));
            if ((min && v < *min) || (max && v > *max)) {
                parse(options, previous);
                throw std::invalid_argument(text + " is not in [" + (min ? toText(*min) : "") + ", " +
                                            (max ? toText(*max) : "") + "]");
            }
        }
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(name() + ": " + e.what());
    }
}

std::string TrainOption::typeName() const
{
    switch (type) {
    case OptionType::Int:
        return "int";
    case OptionType::Int64:
        return "int64";
    case OptionType::UInt64:
        return "uint64";
    case OptionType::Float:
        return "float";
    case OptionType::Bool:
        return "bool";
    case OptionType::IntList:
        return "int list";
    case OptionType::Text:
        break;
    }
    return "text";
}

const std::vector<TrainOption>& trainOptionTable()
{
    static const std::vector<TrainOption> table = buildTable();
    return table;
}

const TrainOption* findTrainOption(std::string_view flagOrKey)
{
    for (const auto& row : trainOptionTable())
        if ((!row.flag.empty() && row.flag == flagOrKey) || (!row.key.empty() && row.key == flagOrKey))
            return &row;
    return nullptr;
}

std::vector<std::string> optionArguments(const TrainOptions& options, const std::vector<std::string>& always)
{
    std::vector<std::string> args;
    for (const auto& row : trainOptionTable()) {
        if (row.flag.empty())
            continue;
        const auto value = row.value(options);
        if (row.switchValue) {
            if (value == toText(*row.switchValue))
                args.push_back(row.flag);
            continue;
        }
        if (value == row.defaultValue() && std::find(always.begin(), always.end(), row.flag) == always.end())
            continue;
        args.push_back(row.flag);
        args.push_back(value);
    }
    return args;
}

std::string optionsToJson(const TrainOptions& o)
{
    json j;
    j["config"] = json::parse(o.config.toJson());
    for (const auto& row : trainOptionTable())
        if (!row.key.empty())
            j[json::json_pointer(row.key)] = valueJson(row, row.value(o));
    return j.dump();
}

void optionsFromJson(const std::string& text, TrainOptions& o)
{
    json j;
    try {
        j = json::parse(text);
    } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("training options are not valid JSON: ") + e.what());
    }
    if (!j.is_object())
        throw std::invalid_argument("training options must be a JSON object");
    if (j.contains("config"))
        o.config = FecConfig::fromJson(j["config"].dump());
    for (const auto& row : trainOptionTable()) {
        if (row.key.empty())
            continue;
        try {
            const json::json_pointer pointer(row.key);
            if (!j.contains(pointer) || j.at(pointer).is_null())
                continue;
            row.parse(o, valueText(row, j.at(pointer)));
        } catch (const std::exception& e) {
            throw std::invalid_argument("training options: " + row.key + ": " + e.what());
        }
    }
}

}  // namespace fec::train
