#!/usr/bin/env bash
# Runs one libFuzzer target for a while: scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]
#   TARGET: checkpoint | image | idx
# Configures and builds build-fuzz (clang, -fsanitize=fuzzer,address,undefined) when needed.
# New interesting inputs go to build-fuzz/work/TARGET/corpus (the committed seed corpus in
# tests/fuzz/corpus/TARGET is only read); crashes go to build-fuzz/work/TARGET/artifacts.
# Exits non-zero when the target crashes, leaks, times out or runs out of memory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: $0 checkpoint|image|idx SECONDS [libFuzzer options...]" >&2
  exit 2
fi
target=${1#fuzz_}
seconds=$2
shift 2
case "$target" in
  checkpoint | image | idx) ;;
  *) echo "unknown fuzz target '$target' (checkpoint, image, idx)" >&2; exit 2 ;;
esac

build=${FEC_FUZZ_BUILD_DIR:-$root/build-fuzz}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cxx=${FEC_FUZZ_CXX:-$(command -v clang++ || command -v clang++-14 || true)}
  if [ -z "$cxx" ]; then
    echo "clang++ not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
    exit 2
  fi
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$root/tests/fuzz" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
fi
nice -n 10 cmake --build "$build" --target "fuzz_$target" -j "${FEC_FUZZ_JOBS:-2}"

work="$build/work/$target"
mkdir -p "$work/corpus" "$work/artifacts"
log="$work/fuzz.log"
export OPENCV_LOG_LEVEL=SILENT OMP_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
echo "fuzzing $target for ${seconds}s (log: $log)"
status=0
nice -n 10 "$build/fuzz_$target" "$work/corpus" "$root/tests/fuzz/corpus/$target" \
  -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=1024 -max_len=65536 \
  -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$@" >"$log" 2>&1 || status=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
if [ "$status" -ne 0 ]; then
  echo "fuzz_$target FAILED (exit $status); the end of its log:" >&2
  grep -v -E '^(libpng|Corrupt JPEG|Premature end|Invalid SOS|Bogus|TIFF|JPEG|Unsupported|Not a JPEG)' "$log" | tail -n 60 >&2
  ls -1 "$work/artifacts" >&2 || true
fi
exit "$status"
