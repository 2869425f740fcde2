#!/usr/bin/env bash
# Soak (issue 6): 1,000 `fec explain` runs in one process and 300 image switches in the explorer,
# with resident memory sampled after each; prints first / after warm-up / last and the slope.
#
#   scripts/soak.sh [CHECKPOINT]
#
# CHECKPOINT defaults to the shipped model (models/*.pth.tar), else the reference tiny_seed0.
# FEC_BUILD_DIR (default build/), FEC_SOAK_RUNS (1000), FEC_SOAK_SWITCHES (300).
# CSV logs are left in $FEC_SOAK_OUT (default: a temporary folder, printed at the end).
# The reduced CTests (label soak) are the same checks with fewer runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="${FEC_BUILD_DIR:-$root/build}"
runs=${FEC_SOAK_RUNS:-1000}
switches=${FEC_SOAK_SWITCHES:-300}
out="${FEC_SOAK_OUT:-$(mktemp -d -t fec-soak-XXXXXX)}"
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE

checkpoint="${1:-}"
if [ -z "$checkpoint" ]; then
  checkpoint=$(ls "$root"/models/*.pth.tar 2>/dev/null | sort | head -n 1 || true)
fi
if [ -z "$checkpoint" ]; then
  checkpoint="${FEC_REFERENCE_DIR:-$root/tests/fixtures/reference}/tiny_seed0.pth.tar"
fi
[ -f "$checkpoint" ] || { echo "soak: no checkpoint at $checkpoint" >&2; exit 2; }
for exe in "$build/app/fec" "$build/tests/ui/test_soak_gui"; do
  [ -x "$exe" ] || { echo "soak: $exe is not built (cmake --build $build --target fec test_soak_gui)" >&2; exit 2; }
done

samples=()
while IFS= read -r f; do samples+=("$f"); done < <(ls "$root"/resources/samples/*.png "$root"/resources/samples/*.jpg 2>/dev/null | sort)
n=${#samples[@]}
repeat=$(( (runs + n - 1) / n ))

# Least squares over the samples after warm-up (two passes over the inputs): KiB per step.
summarise() {  # CSV, column of rss_kib, warm-up rows, what
  awk -F, -v col="$2" -v warm="$3" -v what="$4" 'NR > 1 {
      i = NR - 1; rss[i] = $col; t = $(col - 1) }
    END {
      if (warm >= i) warm = i - 1
      for (k = warm + 1; k <= i; ++k) { n++; sx += k; sy += rss[k]; sxx += k * k; sxy += k * rss[k] }
      slope = (n * sxx - sx * sx) > 0 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : 0
      printf "%s: %d, RSS first %.1f MiB, after warm-up (%d) %.1f MiB, last %.1f MiB, peak %.1f MiB; growth after warm-up %.1f MiB, slope %.2f KiB per step\n",
        what, i, rss[1] / 1024, warm + 1, rss[warm + 1] / 1024, rss[i] / 1024, max(rss, i) / 1024, (rss[i] - rss[warm + 1]) / 1024, slope
    }
    function max(a, m,   k, v) { v = 0; for (k = 1; k <= m; ++k) if (a[k] > v) v = a[k]; return v }' "$1"
}

echo "checkpoint: $checkpoint"
echo "== fec explain: $((repeat * n)) runs ($repeat passes over $n samples) in one process =="
# Default outputs (overlays, K-means, figure PNG, summary.json), rewritten per pass.
"$build/app/fec" explain --checkpoint "$checkpoint" --out "$out/explain" --repeat "$repeat" \
  --memory-log "$out/explain-memory.csv" "${samples[@]}" 2> >(grep -v "iCCP" >&2)
summarise "$out/explain-memory.csv" 4 $((2 * n)) "explains"

echo "== explorer: $switches image switches =="
status=0
(cd "$build/tests/ui" && QT_QPA_PLATFORM=offscreen FEC_SOAK_CHECKPOINT="$checkpoint" FEC_SOAK_SWITCHES="$switches" \
  FEC_SOAK_LOG="$out/gui-memory.csv" ./test_soak_gui) > "$out/gui.log" 2>&1 || status=1
grep -E "QINFO|FAIL|Loc:|Totals" "$out/gui.log" || true
summarise "$out/gui-memory.csv" 3 $((2 * n)) "switches"
echo "logs: $out"
exit "$status"
