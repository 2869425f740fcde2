// Soak: many consecutive `fec explain` runs in one process keep resident memory flat (issue 6).
// The CTest runs a reduced count; scripts/soak.sh runs 1,000 (FEC_SOAK_RUNS) and prints the numbers.
//
// Environment: FEC_SOAK_RUNS (explains, default 85), FEC_SOAK_CHECKPOINT (default: the shipped
// model in models/, else the reference tiny_seed0.pth.tar), FEC_SOAK_LOG (keep the CSV there).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include "fec/cli/cli.h"
#include "fec/resources.h"
#include "reference.h"
#include "run_fec.h"

namespace fs = std::filesystem;

namespace fec {
namespace {

struct Sample {
    int run = 0;
    double seconds = 0;
    double rssMib = 0;
};

std::vector<Sample> readLog(const fs::path& path)
{
    std::vector<Sample> samples;
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        // run,image,seconds,rss_kib,peak_kib; the image path may hold commas, so parse from both ends.
        const auto first = line.find(',');
        std::vector<std::string> tail;
        std::string rest = line;
        for (int i = 0; i < 3; ++i) {
            const auto comma = rest.rfind(',');
            tail.insert(tail.begin(), rest.substr(comma + 1));
            rest.resize(comma);
        }
        samples.push_back({std::stoi(line.substr(0, first)), std::stod(tail[0]), std::stod(tail[1]) / 1024.0});
    }
    return samples;
}

// Least-squares slope of resident memory over runs, in KiB per run.
double slopeKibPerRun(const std::vector<Sample>& s, size_t from)
{
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = from; i < s.size(); ++i) {
        const double x = s[i].run, y = s[i].rssMib * 1024.0;
        n += 1;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    const double d = n * sxx - sx * sx;
    return d > 0 ? (n * sxy - sx * sy) / d : 0.0;
}

int envInt(const char* name, int fallback)
{
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}

TEST(SoakExplain, ResidentMemoryStaysFlat)
{
    const int runs = envInt("FEC_SOAK_RUNS", 85);
    std::string checkpoint = std::getenv("FEC_SOAK_CHECKPOINT") ? std::getenv("FEC_SOAK_CHECKPOINT") : "";
    if (checkpoint.empty())
        checkpoint = fec::defaultModelPath();
    if (checkpoint.empty())
        checkpoint = test::referencePath("tiny_seed0.pth.tar");
    if (!fs::exists(checkpoint))
        GTEST_SKIP() << "no checkpoint: " << checkpoint << " (set FEC_SOAK_CHECKPOINT or FEC_REFERENCE_DIR)";
    const fs::path samples = fs::path(FEC_SOURCE_DIR) / "resources" / "samples";
    std::vector<std::string> inputs;
    for (const auto& e : fs::directory_iterator(samples))
        if (e.path().extension() == ".png" || e.path().extension() == ".jpg")
            inputs.push_back(e.path().string());
    ASSERT_FALSE(inputs.empty()) << samples;
    const int repeat = (runs + static_cast<int>(inputs.size()) - 1) / static_cast<int>(inputs.size());

    const fs::path root = fs::temp_directory_path() / ("fec-soak-explain-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root);
    const char* keep = std::getenv("FEC_SOAK_LOG");
    const fs::path log = keep && *keep ? fs::path(keep) : root / "memory.csv";

    // The default outputs (overlays, K-means, figure PNG, summary) rewritten into one folder per
    // image on every pass: the whole explain path, without 1,000 folders on disk.
    std::vector<std::string> args{
        "explain",  "--checkpoint",         checkpoint,     "--out",     (root / "out").string(),
        "--repeat", std::to_string(repeat), "--memory-log", log.string()};
    args.insert(args.end(), inputs.begin(), inputs.end());
    ASSERT_EQ(test::runFec(args), 0);

    const auto s = readLog(log);
    fs::remove_all(root);
    ASSERT_EQ(s.size(), inputs.size() * repeat);
    // Warm-up: the first two passes over the samples (allocator caches, oneDNN kernels for each
    // input shape, font and image-codec caches fill up).
    const size_t warm = std::min(s.size() - 1, 2 * inputs.size());
    const double slope = slopeKibPerRun(s, warm);
    const double growth = s.back().rssMib - s[warm].rssMib;
    std::cout << "explains " << s.size() << ", RSS first " << s.front().rssMib << " MiB, after warm-up (" << warm
              << ") " << s[warm].rssMib << " MiB, last " << s.back().rssMib << " MiB, growth after warm-up " << growth
              << " MiB, slope " << slope << " KiB/explain, " << s.back().seconds << " s\n";
#if defined(__SANITIZE_ADDRESS__)
    // asan preset: resident memory then includes AddressSanitizer's quarantine of freed blocks
    // (up to 256 MiB), which fills and drains in steps, so the bounds below say nothing. Leaks
    // are checked by LeakSanitizer instead, at the exit of the `fec` run asserted above.
    std::cout << "resident-memory bounds not checked under AddressSanitizer (LeakSanitizer checked the run)\n";
    return;
#endif
    // A leak of one traced forward's tensors (the smallest thing we could lose per run) is over
    // 100 KiB; 16 KiB/explain over 1,000 runs would still be 16 MiB. The bound on growth is 24 MiB
    // after warm-up: the caching CPU allocator and glibc arenas settle in steps of a few MiB.
    EXPECT_LT(slope, 16.0) << "resident memory grows with every explain";
    EXPECT_LT(growth, 24.0) << "resident memory grew after warm-up";
}

}  // namespace
}  // namespace fec
