#pragma once

// CPU-time bounds for hostile-input tests: CPU seconds measure the work done, where wall time
// would measure how busy the (shared) machine is.

#include <ctime>
#include <functional>

namespace fec::test {

#ifdef __SANITIZE_ADDRESS__
constexpr double kCpuSlack = 10.0;  // sanitizer builds run several times slower
#else
constexpr double kCpuSlack = 1.0;
#endif

/// CPU seconds the process spends in `f`.
inline double cpuSecondsOf(const std::function<void()>& f)
{
    timespec a{}, b{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    f();
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    return static_cast<double>(b.tv_sec - a.tv_sec) + 1e-9 * static_cast<double>(b.tv_nsec - a.tv_nsec);
}

}  // namespace fec::test
