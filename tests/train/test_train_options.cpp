// The one list of training options: every row reads back what it writes, through run.json's
// "options" and through the command line, run.json files of earlier versions still read, and
// bad values are refused with the flag's name.

#include <set>
#include <string>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fec/train/train_options.h"

namespace fec::train {
namespace {

using json = nlohmann::json;

// A value of `row` that differs from its default and is accepted by its checks.
std::string sampleValue(const TrainOption& row)
{
    const auto d = row.defaultValue();
    switch (row.type) {
    case OptionType::Int:
    case OptionType::Int64:
        return std::to_string(std::stoll(d) + 3);
    case OptionType::UInt64:
        return "12345678901234567";
    case OptionType::Float:
        return d == "0.375" ? "0.25" : "0.375";
    case OptionType::Bool:
        return d == "true" ? "false" : "true";
    case OptionType::IntList:
        return "0,2";
    case OptionType::Text:
        break;
    }
    for (const auto& choice : row.choices)
        if (choice != d)
            return choice;
    return "sample-" + row.key.substr(1);
}

// Every row at its sample value.
TrainOptions everythingChanged()
{
    TrainOptions o;
    for (const auto& row : trainOptionTable())
        row.set(o, sampleValue(row));
    return o;
}

TEST(TrainOptionTable, FlagsAndKeysAreUniqueAndDefaultsReadBack)
{
    std::set<std::string> flags, keys;
    const TrainOptions defaults;
    for (const auto& row : trainOptionTable()) {
        ASSERT_TRUE(row.get && row.parse) << row.name();
        EXPECT_FALSE(row.flag.empty() && row.key.empty()) << "a row must be a flag, a run.json key or both";
        if (!row.flag.empty())
            EXPECT_TRUE(flags.insert(row.flag).second) << row.flag;
        if (!row.key.empty())
            EXPECT_TRUE(keys.insert(row.key).second) << row.key;
        EXPECT_FALSE(row.help.empty()) << row.name();
        TrainOptions o;
        row.set(o, row.defaultValue().empty() && !row.choices.empty() ? row.choices.front() : row.defaultValue());
        if (row.choices.empty())
            EXPECT_EQ(row.value(o), row.value(defaults)) << row.name();
        EXPECT_EQ(findTrainOption(row.name()), &row);
    }
    // The flags `fec train` has always had for TrainOptions values.
    for (const char* flag :
         {"--checkpoint", "--weights",   "--freeze-stages",  "--drop-path",    "--size",      "--batch",
          "--accum",      "--workers",   "--crop-scale",     "--hflip",        "--reprob",    "--mixup",
          "--cutmix",     "--smoothing", "--eval-resize",    "--epochs",       "--max-steps", "--lr",
          "--min-lr",     "--warmup-lr", "--warmup-epochs",  "--weight-decay", "--clip",      "--ema",
          "--seed",       "--log-every", "--no-tensorboard", "--device",       "--resume"})
        EXPECT_TRUE(flags.count(flag)) << flag;
}

TEST(TrainOptionTable, EveryRowGoesThroughRunJsonAndBack)
{
    const auto changed = everythingChanged();
    const auto text = optionsToJson(changed);
    const auto j = json::parse(text);
    EXPECT_TRUE(j.contains("config"));
    TrainOptions back;
    optionsFromJson(text, back);
    for (const auto& row : trainOptionTable()) {
        if (row.key.empty())
            continue;
        ASSERT_TRUE(j.contains(json::json_pointer(row.key))) << row.key << " missing from " << text;
        EXPECT_EQ(row.value(back), sampleValue(row)) << row.key;
        EXPECT_NE(row.value(back), row.defaultValue()) << row.key;
    }
    // run.json's shapes stay what scripts read: nested objects, the betas and ranges as pairs.
    EXPECT_TRUE(j["augment"]["scale"].is_array());
    EXPECT_EQ(j["augment"]["scale"].size(), 2u);
    EXPECT_EQ(j["betas"].size(), 2u);
    EXPECT_TRUE(j["mix"]["smoothing"].is_number());
    EXPECT_TRUE(j["freeze_stages"].is_array());
    EXPECT_TRUE(j["seed"].is_number_unsigned());
    EXPECT_EQ(j["seed"].get<uint64_t>(), 12345678901234567ull);
}

TEST(TrainOptionTable, EveryFlagGoesThroughTheCommandLineAndBack)
{
    EXPECT_TRUE(optionArguments(TrainOptions{}).empty()) << "defaults are not repeated";
    const auto pinned = optionArguments(TrainOptions{}, {"--lr", "--size"});
    EXPECT_EQ(pinned, (std::vector<std::string>{"--size", "224", "--lr", "0.001"}));

    const auto changed = everythingChanged();
    const auto args = optionArguments(changed);
    TrainOptions parsed;
    std::set<std::string> seen;
    for (size_t i = 0; i < args.size(); ++i) {
        const auto* row = findTrainOption(args[i]);
        ASSERT_TRUE(row) << args[i] << " is not a flag of the table";
        seen.insert(row->flag);
        if (row->switchValue)
            row->set(parsed, *row->switchValue ? "true" : "false");
        else
            row->set(parsed, args.at(++i));
    }
    for (const auto& row : trainOptionTable()) {
        if (row.flag.empty())
            continue;
        EXPECT_TRUE(seen.count(row.flag)) << row.flag << " not passed although changed";
        EXPECT_EQ(row.value(parsed), row.value(changed)) << row.flag;
    }
}

TEST(TrainOptionTable, RunJsonOfEarlierVersionsStillReads)
{
    // "options" as fec wrote it before the table (hand-written serialisation).
    const std::string old = R"({"checkpoint":"","weights":"ema","freeze_stages":[0,1],"drop_path":0.2,"size":32,)"
                            R"("batch":16,"accum":2,"workers":1,"augment":{"random_crop":false,"scale":[0.5,1.0],)"
                            R"("ratio":[0.75,1.3333333333333333],"hflip":0.0,"reprob":0.25},"mix":{"mixup":0.8,)"
                            R"("cutmix":1.0,"prob":1.0,"switch_prob":0.5,"smoothing":0.0},"eval_resize":"squash",)"
                            R"("epochs":3,"max_steps":40,"lr":0.002,"min_lr":1e-05,"warmup_lr":1e-06,)"
                            R"("warmup_epochs":0.5,"weight_decay":0.05,"betas":[0.9,0.98],"eps":1e-08,)"
                            R"("clip_grad":1.0,"ema_decay":0.999,"seed":7,"log_every":1,"tensorboard":false,)"
                            R"("device":"cpu"})";
    TrainOptions o;
    optionsFromJson(old, o);
    EXPECT_EQ(o.weights, WeightsChoice::Ema);
    EXPECT_EQ(o.freezeStages, (std::vector<int>{0, 1}));
    EXPECT_EQ(o.size, 32);
    EXPECT_EQ(o.accum, 2);
    EXPECT_FALSE(o.augment.randomCrop);
    EXPECT_EQ(o.augment.scaleMin, 0.5);
    EXPECT_EQ(o.augment.eraseProb, 0.25);
    EXPECT_EQ(o.mix.mixupAlpha, 0.8);
    EXPECT_EQ(o.mix.smoothing, 0.0);
    EXPECT_EQ(o.evalResize, "squash");
    EXPECT_EQ(o.maxSteps, 40);
    EXPECT_EQ(o.beta2, 0.98);
    EXPECT_EQ(o.emaDecay, 0.999);
    EXPECT_EQ(o.seed, 7u);
    EXPECT_FALSE(o.tensorboard);
    // And it writes back the same JSON (same keys, same values).
    EXPECT_EQ(json::parse(optionsToJson(o)).value("augment", json()), json::parse(old)["augment"]);
    // Integers written as floating point by another tool are accepted when whole.
    optionsFromJson(R"({"epochs":4.0,"seed":9.0})", o);
    EXPECT_EQ(o.epochs, 4);
    EXPECT_EQ(o.seed, 9u);
    EXPECT_THROW(optionsFromJson(R"({"epochs":2.5})", o), std::invalid_argument);
    EXPECT_THROW(optionsFromJson(R"({"lr":"fast"})", o), std::invalid_argument);
}

TEST(TrainOptionTable, BadValuesAreRefusedNamingTheFlag)
{
    TrainOptions o;
    const auto refused = [&](const char* flag, const char* value, const char* expected) {
        try {
            findTrainOption(flag)->set(o, value);
            ADD_FAILURE() << flag << " " << value << " was accepted";
        } catch (const std::invalid_argument& e) {
            const std::string what = e.what();
            EXPECT_EQ(what.rfind(std::string(flag) + ": ", 0), 0u) << what;
            EXPECT_NE(what.find(expected), std::string::npos) << what;
        }
    };
    refused("--epochs", "0", "not in [1, 100000]");
    refused("--lr", "fast", "not a number");
    refused("--seed", "-1", "non-negative integer");
    refused("--weights", "best", "auto, state_dict, ema");
    refused("--eval-resize", "stretch", "squash, crop");
    refused("--freeze-stages", "0,x", "not an integer");
    EXPECT_EQ(o.epochs, TrainOptions().epochs) << "a refused value leaves the option as it was";
    findTrainOption("--freeze-stages")->set(o, "1, 3");
    EXPECT_EQ(o.freezeStages, (std::vector<int>{1, 3}));
    findTrainOption("--lr")->set(o, "2e-3");
    EXPECT_EQ(findTrainOption("--lr")->value(o), "0.002");
}

}  // namespace
}  // namespace fec::train
