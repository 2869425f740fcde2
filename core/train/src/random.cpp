#include "fec/train/random.h"

#include <cmath>
#include <numeric>

namespace fec::train {

namespace {

uint64_t splitMix(uint64_t& state)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

}  // namespace

uint64_t mixSeed(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    uint64_t state = a;
    uint64_t h = splitMix(state);
    for (uint64_t v : {b, c, d, e}) {
        state = h ^ (v * 0xd6e8feb86659fd93ull);
        h = splitMix(state);
    }
    return h;
}

Rng::Rng(uint64_t seed)
{
    uint64_t state = seed;
    for (auto& s : m_s)
        s = splitMix(state);
}

uint64_t Rng::next()
{
    const uint64_t result = rotl(m_s[1] * 5, 7) * 9;
    const uint64_t t = m_s[1] << 17;
    m_s[2] ^= m_s[0];
    m_s[3] ^= m_s[1];
    m_s[1] ^= m_s[2];
    m_s[0] ^= m_s[3];
    m_s[2] ^= t;
    m_s[3] = rotl(m_s[3], 45);
    return result;
}

double Rng::uniform()
{
    return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

int64_t Rng::below(int64_t n)
{
    if (n <= 1)
        return 0;
    // Lemire's nearly-divisionless method would do; rejection keeps it exact and simple.
    const uint64_t range = static_cast<uint64_t>(n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do {
        x = next();
    } while (x >= limit);
    return static_cast<int64_t>(x % range);
}

double Rng::normal()
{
    if (m_hasSpare) {
        m_hasSpare = false;
        return m_spare;
    }
    double u1;
    do {
        u1 = uniform();
    } while (u1 <= 0.0);
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    m_spare = radius * std::sin(2.0 * M_PI * u2);
    m_hasSpare = true;
    return radius * std::cos(2.0 * M_PI * u2);
}

double Rng::gamma(double shape)
{
    if (shape < 1.0) {
        // Boost to shape + 1 and scale by U^(1/shape).
        double u;
        do {
            u = uniform();
        } while (u <= 0.0);
        return gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = normal();
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = uniform();
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v)))
            return d * v;
    }
}

double Rng::beta(double a, double b)
{
    const double x = gamma(a), y = gamma(b);
    return x + y > 0.0 ? x / (x + y) : 0.5;
}

std::vector<int64_t> epochOrder(int64_t n, uint64_t seed, int64_t epoch, bool shuffle)
{
    std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
    std::iota(order.begin(), order.end(), int64_t{0});
    if (!shuffle)
        return order;
    Rng rng(mixSeed(seed, 0x5eed0dde7ull, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i)
        std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(i + 1))]);
    return order;
}

}  // namespace fec::train
