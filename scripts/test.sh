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
status=0
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  xvfb-run -a -s "-screen 0 1280x800x24" ctest --output-on-failure --timeout 900 "$@" || status=$?
else
  ctest --output-on-failure --timeout 900 "$@" || status=$?
fi

# Each libFuzzer target (tests/fuzz) for FEC_FUZZ_SECONDS (60 by default; 0 skips them).
fuzz_seconds=${FEC_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
  for target in checkpoint image idx; do
    "$root/scripts/fuzz.sh" "$target" "$fuzz_seconds" || status=1
  done
fi
exit "$status"
