#!/usr/bin/env bash
# Builds the engine alone (FEC_CORE_ONLY: core/, its tests, `fec` without image commands, the
# benchmark) against the CUDA LibTorch of a Python torch install, then runs the test suite with
# the `gpu` tests included, the CUDA benchmarks and a CUDA training step. Logs go to OUT_DIR.
#
#   scripts/gpu-check.sh [OUT_DIR]
#
# Environment: FEC_REFERENCE_DIR (the reference fixtures, default tests/fixtures/reference),
# FEC_EXTRA_PREFIX (a prefix holding what the machine lacks: nlohmann-json, CLI11, GoogleTest,
# zlib.h), FEC_GPU_BUILD (build folder, default build-gpu), JOBS.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-gpu-report}
build=${FEC_GPU_BUILD:-build-gpu}
jobs=${JOBS:-$(nproc)}
mkdir -p "$out"
export FEC_REFERENCE_DIR=${FEC_REFERENCE_DIR:-$(realpath tests/fixtures/reference)}

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || { echo "no Python torch" >&2; exit 1; }
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no device")' | tee "$out/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$out/device.txt" 2>&1

prefix="$torch_prefix"
args=()
if [[ -n ${FEC_EXTRA_PREFIX:-} ]]; then
    prefix="$prefix;$(realpath "$FEC_EXTRA_PREFIX")"
    if [[ ! -e /usr/include/zlib.h && -e $FEC_EXTRA_PREFIX/include/zlib.h ]]; then
        zlib=$(ls /usr/lib/x86_64-linux-gnu/libz.so* /lib/x86_64-linux-gnu/libz.so* 2>/dev/null | head -1)
        args+=(-DZLIB_INCLUDE_DIR="$(realpath "$FEC_EXTRA_PREFIX/include")" -DZLIB_LIBRARY="$zlib")
    fi
fi
arch=$(python3 -c 'import torch; p=torch.cuda.get_device_capability(); print(f"{p[0]}.{p[1]}")' 2>/dev/null || echo 9.0)

step() { echo "== $*" | tee -a "$out/summary.txt"; }
step "configure"
TORCH_CUDA_ARCH_LIST=$arch cmake -S . -B "$build" -G Ninja -DFEC_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DFEC_REFERENCE_DIR="$FEC_REFERENCE_DIR" "${args[@]}" >"$out/configure.log" 2>&1 \
    || { tail -40 "$out/configure.log"; exit 1; }
step "build ($jobs jobs)"
start=$(date +%s)
cmake --build "$build" -j "$jobs" >"$out/build.log" 2>&1 || { grep -B2 -A12 -m3 "error" "$out/build.log"; exit 1; }
echo "build took $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"

step "tests (gpu included)"
ctest --test-dir "$build" --output-on-failure -j 4 2>&1 | tee "$out/ctest.log" | tail -25
grep -E "tests passed|Skipped|Failed" "$out/ctest.log" >>"$out/summary.txt"
"$build/tests/test_parity_gpu" >"$out/test_parity_gpu.log" 2>&1; echo "test_parity_gpu rc=$?" | tee -a "$out/summary.txt"

fec="$build/app/fec"
step "CUDA inference benchmark (fec_small, 224)"
for precision in fp32 bf16 fp16; do
    "$fec" bench --device cuda --arch fec_small --batch 1,16,64,256 --repeats 20 --precision "$precision" 2>&1 | tee -a "$out/bench.txt"
done
"$fec" bench --device cuda --arch fec_small --batch 1,64 --repeats 20 --traced 2>&1 | tee -a "$out/bench.txt"
"$fec" --threads "$(nproc)" bench --device cpu --arch fec_small --batch 1,16 --repeats 5 2>&1 | tee -a "$out/bench.txt"
step "CUDA training step (fec_small, 224, batch 64)"
"$fec" train --bench --device cuda --arch fec_small --size 224 --batch 64 --bench-steps 10 2>&1 | tee -a "$out/bench.txt"
step "out of memory is reported, not a crash"
"$fec" bench --device cuda --arch fec_small --size 1024 --batch 256 --repeats 1 >"$out/oom.txt" 2>&1; echo "rc=$?" >>"$out/oom.txt"
cat "$out/oom.txt" | tee -a "$out/summary.txt"
cat "$out/summary.txt"
