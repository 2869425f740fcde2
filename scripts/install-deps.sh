#!/usr/bin/env bash
# Installs every Debian 12 package FEC Explorer needs to build, run and test.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-openmp libgloo-dev zlib1g-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev
  libopencv-dev
  qt6-base-dev libqt6opengl6-dev qt6-svg-dev libqcustomplot-dev libvtk9-dev
  xvfb xauth
  dataset-fashion-mnist
  clang-14 libclang-rt-14-dev
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's default BLAS is the slow reference one; OpenBLAS (OpenMP build) makes LibTorch
# 7-25x faster here. Make sure it is the selected alternative.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  path=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-openmp | head -n1 || true)
  if [ -n "$path" ]; then
    "${sudo_cmd[@]}" update-alternatives --set "$alt" "$path" >/dev/null
  fi
done
