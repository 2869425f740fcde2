// Google Benchmark: segment evidence and ablation (issue "Segment evidence"). Not a test: run
// build/tests/bench/bench_evidence with OMP_WAIT_POLICY=PASSIVE (numbers go to docs/benchmarks.md).
// Targets, 2 CPU threads: default model at 128, every level-3 segment of one image <= 60 ms,
// every segment of every level <= 1.5 s, one "remove these segments" re-run <= 40 ms; fec_small
// at 224, every level-3 segment <= 400 ms.

#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/evidence.h"
#include "fec/imaging/image.h"
#include "fec/runtime.h"
#include "reference.h"

namespace {

struct Case {
    fec::LoadedModel loaded;
    at::Tensor input;
    fec::Trace trace;
    fec::SegmentPyramid pyramid;
    Case(const std::string& checkpoint, const std::string& image, int size)
    {
        fec::initRuntime(0);
        loaded = fec::loadCheckpoint(checkpoint);
        loaded.model->eval();
        input = fec::imaging::prepareImage(fec::imaging::loadImageRgb(image), size, fec::imaging::Preprocess::Squash)
                    .tensor.unsqueeze(0);
        c10::InferenceMode guard;
        trace = loaded.model->forwardTraced(input);
        pyramid = fec::buildPyramid(trace, 0);
    }
};

Case& fashion()
{
    static Case c(FEC_SOURCE_DIR "/models/fec-fashion-128.pth.tar",
                  FEC_SOURCE_DIR "/resources/samples/fashion-ankle-boot-00000.png", 128);
    return c;
}

Case& small()
{
    static Case c(fec::test::referencePath("fec_small_seed0.pth.tar"), fec::test::referencePath("inputs/chelsea.png"),
                  224);
    return c;
}

void effectsOfLevel(benchmark::State& state, Case& c, int level)
{
    const auto& segments = c.pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty;
    for (auto _ : state) {
        fec::SegmentAblator ablator(*c.loaded.model, c.input, level, segments);
        benchmark::DoNotOptimize(ablator.singleEffects());
    }
    state.counters["segments"] = static_cast<double>(segments.size());
}

void BM_FashionLevel3Effects(benchmark::State& state)
{
    effectsOfLevel(state, fashion(), 3);
}
void BM_FashionLevel2Effects(benchmark::State& state)
{
    effectsOfLevel(state, fashion(), 2);
}
void BM_FashionLevel1Effects(benchmark::State& state)
{
    effectsOfLevel(state, fashion(), 1);
}

void BM_FashionEveryLevelEffects(benchmark::State& state)
{
    auto& c = fashion();
    for (auto _ : state)
        for (int level = 1; level <= 3; ++level) {
            fec::SegmentAblator ablator(*c.loaded.model, c.input, level,
                                        c.pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty);
            benchmark::DoNotOptimize(ablator.singleEffects());
        }
}

// The window's "remove these segments": the ablator (pool output, baseline) is kept per image.
void BM_FashionRemoveThreeSegments(benchmark::State& state)
{
    auto& c = fashion();
    const auto& segments = c.pyramid.levels.back().nonEmpty;
    fec::SegmentAblator ablator(*c.loaded.model, c.input, 3, segments);
    const std::vector<int32_t> remove(segments.begin(), segments.begin() + std::min<size_t>(3, segments.size()));
    for (auto _ : state)
        benchmark::DoNotOptimize(ablator.removing(remove));
}

void BM_FashionExactEvidence(benchmark::State& state)
{
    auto& c = fashion();
    for (auto _ : state) {
        const auto e = fec::computeEvidence(*c.loaded.model, c.trace.finalMap);
        benchmark::DoNotOptimize(fec::evidenceMaps(e, c.pyramid, 9));
    }
}

void BM_SmallLevel3Effects(benchmark::State& state)
{
    effectsOfLevel(state, small(), 3);
}

}  // namespace

BENCHMARK(BM_FashionExactEvidence)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FashionLevel3Effects)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FashionLevel2Effects)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FashionLevel1Effects)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FashionEveryLevelEffects)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FashionRemoveThreeSegments)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SmallLevel3Effects)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
