#!/usr/bin/env bash
# Installs whatever Flint needs that this machine lacks. Idempotent: a second run
# only checks. Debian 12 (bookworm) ships LLVM/MLIR 22 in its own archive.
set -euo pipefail

apt_pkgs=(
  llvm-22-dev libmlir-22-dev mlir-22-tools libpolly-22-dev
  libzstd-dev libz3-dev libxml2-dev zlib1g-dev
  clang libclang-dev pkg-config python3-venv
)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python side: NumPy for the golden-output generator and the end-to-end checks.
py_pkgs=(numpy)
for p in "${py_pkgs[@]}"; do
  python3 -c "import $p" 2>/dev/null || python3 -m pip install -q "$p"
done

# ptxas for validating generated PTX without a GPU or a CUDA install: the standalone
# assembler in NVIDIA's `nvidia-cuda-nvcc` package (CUDA 13.x, about 47 MB). The wheel puts it
# at site-packages/nvidia/cu13/bin/ptxas; tests find it through importlib.metadata.
if ! python3 -c "import importlib.metadata as m; m.distribution('nvidia-cuda-nvcc')" 2>/dev/null; then
  echo "install-deps: pip install nvidia-cuda-nvcc==13.*"
  python3 -m pip install -q 'nvidia-cuda-nvcc==13.*'
fi

# rustfmt and clippy ship as rustup components.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
echo "install-deps: ok"
