#!/usr/bin/env bash
# Command (1) of the README: installs what is missing, builds, and opens FEC Explorer on the
# shipped default model and sample images.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${FEC_BUILD_DIR:-$root/build}"
export OMP_WAIT_POLICY=PASSIVE
args=("$@")
# The explorer loads the default model from models/ by itself. Without one, fall back to the
# reference checkpoint and image of the test fixtures.
if [ ${#args[@]} -eq 0 ] && ! ls "$root"/models/*.pth.tar >/dev/null 2>&1; then
  ref="$root/tests/fixtures/reference"
  if [ -f "$ref/fec_small_seed0.pth.tar" ]; then
    args=(--checkpoint "$ref/fec_small_seed0.pth.tar" "$ref/inputs/chelsea.png")
  fi
fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "No display: taking a screenshot instead (build/explorer.png)." >&2
  exec xvfb-run -a -s "-screen 0 1400x900x24" "$build/app/fec-explorer" "${args[@]}" --screenshot "$build/explorer.png"
fi
exec "$build/app/fec-explorer" "${args[@]}"
