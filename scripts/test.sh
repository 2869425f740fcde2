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
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  exec xvfb-run -a -s "-screen 0 1280x800x24" ctest --output-on-failure --timeout 900 "$@"
fi
exec ctest --output-on-failure --timeout 900 "$@"
