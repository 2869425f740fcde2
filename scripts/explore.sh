#!/usr/bin/env bash
# Command (1) of the README: installs what is missing, builds, and opens FEC Explorer on the
# shipped default model and sample images.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${FEC_BUILD_DIR:-$root/build}"
export OMP_WAIT_POLICY=PASSIVE
if [ -x "$build/app/fec-explorer" ]; then
  exec "$build/app/fec-explorer" "$@"
fi
# Until the explorer window exists, explain the reference image with the CLI.
"$build/app/fec" inspect "$root/../shared/reference/fec_small_seed0.pth.tar"
exec "$build/app/fec" predict --checkpoint "$root/../shared/reference/fec_small_seed0.pth.tar" "$root/../shared/reference/inputs/chelsea.png"
