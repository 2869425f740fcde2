#pragma once

// Counter-based randomness for training: every random decision is drawn from a generator seeded
// by (run seed, epoch, sample index) or (run seed, step, ...), so results do not depend on the
// number of loader threads, and a resumed run replays exactly what an uninterrupted one does.
// Implemented here (not std:: distributions) so the streams are the same on every platform.

#include <cstdint>
#include <vector>

namespace fec::train {

/// Mixes values into one 64-bit seed (SplitMix64 finaliser chain).
uint64_t mixSeed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0, uint64_t e = 0);

/// xoshiro256** seeded through SplitMix64.
class Rng {
public:
    explicit Rng(uint64_t seed);
    uint64_t next();
    /// Uniform in [0, 1).
    double uniform();
    /// Uniform in [a, b).
    double uniform(double a, double b) { return a + (b - a) * uniform(); }
    /// Uniform integer in [0, n).
    int64_t below(int64_t n);
    /// Standard normal (Box-Muller).
    double normal();
    /// Gamma(shape, 1) (Marsaglia-Tsang).
    double gamma(double shape);
    /// Beta(a, b) from two gamma draws.
    double beta(double a, double b);

private:
    uint64_t m_s[4];
    bool m_hasSpare = false;
    double m_spare = 0.0;
};

/// The sample order of one epoch: a permutation of [0, n) seeded by (seed, epoch), or the
/// identity when `shuffle` is false.
std::vector<int64_t> epochOrder(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);

}  // namespace fec::train
