// Google Benchmark: analysis after a traced forward, K-means re-merges and overlay rendering.
// Not a test: run build/tests/bench/bench_analysis (numbers go to docs/benchmarks.md).

#include <benchmark/benchmark.h>

#include <c10/core/InferenceMode.h>
#include <opencv2/imgproc.hpp>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/imaging/render.h"
#include "fec/runtime.h"
#include "reference.h"

namespace {

struct Fixture {
    fec::Trace trace;
    cv::Mat image;
    fec::imaging::PreparedImage prepared;
    Fixture()
    {
        fec::initRuntime(0);
        auto loaded = fec::loadCheckpoint(fec::test::referencePath("fec_small_seed0.pth.tar"));
        image = fec::imaging::loadImageRgb(fec::test::referencePath("inputs/chelsea.png"));
        prepared = fec::imaging::prepareImage(image, 224, fec::imaging::Preprocess::Squash);
        c10::InferenceMode guard;
        trace = loaded.model->forwardTraced(prepared.tensor.unsqueeze(0));
    }
};

Fixture& fixture()
{
    static Fixture f;
    return f;
}

// Traced forward -> all level maps + hierarchy + encoding partitions + a K-means merge.
void BM_AnalysisAfterForward(benchmark::State& state)
{
    auto& f = fixture();
    for (auto _ : state) {
        auto pyramid = fec::buildPyramid(f.trace, 0);
        auto labels = pyramid.allPixelLabels();
        auto parts = fec::encodingPartitions(f.trace, 0);
        fec::imaging::ClusterMerger merger(pyramid);
        benchmark::DoNotOptimize(merger.merge(3).inertia);
        benchmark::DoNotOptimize(labels.data_ptr());
    }
}
BENCHMARK(BM_AnalysisAfterForward)->Unit(benchmark::kMillisecond);

// Pyramid + hierarchy alone (no encoding partitions, no K-means).
void BM_PyramidAndHierarchy(benchmark::State& state)
{
    auto& f = fixture();
    for (auto _ : state)
        benchmark::DoNotOptimize(fec::buildPyramid(f.trace, 0).nodes.size());
}
BENCHMARK(BM_PyramidAndHierarchy)->Unit(benchmark::kMillisecond);

// Re-merging for a new k (the K-means slider).
void BM_RemergeNewK(benchmark::State& state)
{
    auto& f = fixture();
    auto pyramid = fec::buildPyramid(f.trace, 0);
    int k = 2;
    for (auto _ : state) {
        state.PauseTiming();
        fec::imaging::ClusterMerger merger(pyramid);
        merger.merge(3);
        k = k % (merger.maxK() - 1) + 2;
        state.ResumeTiming();
        benchmark::DoNotOptimize(merger.merge(k == 3 ? 4 : k).inertia);
    }
}
BENCHMARK(BM_RemergeNewK)->Unit(benchmark::kMillisecond);

// Overlay of a level on a photo at its own resolution (2048x1536 and 4032x3024 = 12 MP).
void BM_OverlayPhoto(benchmark::State& state)
{
    auto& f = fixture();
    const int w = static_cast<int>(state.range(0)), h = static_cast<int>(state.range(1));
    cv::Mat photo;
    cv::resize(f.image, photo, cv::Size(w, h));
    auto prepared = fec::imaging::prepareImage(photo, 224, fec::imaging::Preprocess::Squash);
    auto labels = fec::buildPyramid(f.trace, 0).pixelLabels(2);
    fec::imaging::OverlayStyle style;
    for (auto _ : state)
        benchmark::DoNotOptimize(fec::imaging::overlay(photo, labels, prepared.mapping, style).data);
}
BENCHMARK(BM_OverlayPhoto)->Args({2048, 1536})->Args({4032, 3024})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
