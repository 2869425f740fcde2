#!/usr/bin/env bash
# Command (2) of the README: installs what is missing, builds, and runs the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${FEC_BUILD_DIR:-$root/build}"
export OMP_WAIT_POLICY=PASSIVE
cd "$build"
# GL/VTK tests need an X display; everything else runs offscreen.
console="$build/Testing/ctest-console.log"
mkdir -p "$build/Testing"
set +e
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  xvfb-run -a -s "-screen 0 1280x800x24" ctest --output-on-failure --timeout 900 "$@" 2>&1 | tee "$console"
  status=${PIPESTATUS[0]}
else
  ctest --output-on-failure --timeout 900 "$@" 2>&1 | tee "$console"
  status=${PIPESTATUS[0]}
fi
set -e

# A test may skip only for a missing GPU (label gpu). Anything else that skipped (a whole test,
# a GoogleTest case or a Qt Test function) is a broken set-up a newcomer must hear about.
gpu_tests=$(ctest -N -L gpu | sed -n 's/^ *Test *#[0-9]*: *//p')
is_gpu() { printf '%s\n' "$gpu_tests" | grep -qx "$1"; }
skipped=()
while read -r name; do
  [ -n "$name" ] && ! is_gpu "$name" && skipped+=("$name (whole test)")
done < <(sed -n 's/.*Test *#[0-9]*: \([^ ]*\) .*\*\*\*Skipped.*/\1/p' "$console")
if [ -f "$build/Testing/Temporary/LastTest.log" ]; then
  while IFS=$'\t' read -r name line; do
    is_gpu "$name" || skipped+=("$name: $line")
  done < <(awk '/^[0-9]+\/[0-9]+ Test: /{name=$3} /^\[  SKIPPED \] [A-Za-z]/ || /^SKIP   : /{print name "\t" $0}' \
             "$build/Testing/Temporary/LastTest.log" | sort -u)
fi
if [ ${#skipped[@]} -gt 0 ]; then
  echo "scripts/test.sh: ${#skipped[@]} skip(s) that are not for a missing GPU:" >&2
  printf '  %s\n' "${skipped[@]}" >&2
  status=1
fi

# Each libFuzzer target (tests/fuzz) for FEC_FUZZ_SECONDS (60 by default; 0 skips them).
fuzz_seconds=${FEC_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
  for target in checkpoint image idx; do
    "$root/scripts/fuzz.sh" "$target" "$fuzz_seconds" || status=1
  done
fi
exit "$status"
