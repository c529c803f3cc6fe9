#!/usr/bin/env bash
# Builds ossterm with `--features cuda` on a machine with no GPU and no system CUDA: CUDA's
# compiler, headers and libraries come from NVIDIA's PyPI wheels into target/cuda-toolkit.
#
#   scripts/build-cuda.sh [extra cargo args]      e.g. scripts/build-cuda.sh --release
#   CARGO_SUBCOMMAND=clippy scripts/build-cuda.sh --all-targets -- -D warnings
#
# CUDA_MINOR (default 13.0) must match the CUDA libraries where the binary will run (the H100
# test machine's PyTorch ships cu130); CUDA_COMPUTE_CAP (default 90 = Hopper, 80 = Ampere/Ada,
# 120 = Blackwell) picks the one architecture candle's quantized kernels are compiled for.
# candle's kernels take long to compile (~45 min on 2 cores): keep target/ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_MINOR=${CUDA_MINOR:-13.0}
CUDA_MAJOR=${CUDA_MINOR%%.*}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
TOOLKIT=${CUDA_TOOLKIT_DIR:-$PWD/target/cuda-toolkit}

# 1. The toolkit from PyPI (nvcc, headers, runtime libraries), pinned to one CUDA minor version
#    (nvvm too: an unpinned nvvm is newer and writes PTX that this ptxas refuses).
if [ ! -x "$TOOLKIT/venv/bin/python" ]; then
  python3 -m venv "$TOOLKIT/venv"
fi
"$TOOLKIT/venv/bin/pip" install -q \
  "nvidia-cuda-nvcc==$CUDA_MINOR.*" "nvidia-cuda-runtime==$CUDA_MINOR.*" \
  "nvidia-cuda-crt==$CUDA_MINOR.*" "nvidia-cuda-cccl==$CUDA_MINOR.*" \
  "nvidia-cuda-nvrtc==$CUDA_MINOR.*" "nvidia-nvvm==$CUDA_MINOR.*" "nvidia-cublas==$CUDA_MINOR.*" \
  nvidia-curand
ROOT=$("$TOOLKIT/venv/bin/python" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu$CUDA_MAJOR'))")
[ -x "$ROOT/bin/nvcc" ] || { echo "error: no nvcc under $ROOT" >&2; exit 1; }

# 2. A CUDA_HOME the build scripts understand: the wheels' include/, and a lib/ with the
#    unversioned names the linker wants.
HOME_DIR="$TOOLKIT/cuda"
mkdir -p "$HOME_DIR/lib"
ln -sfn "$ROOT/include" "$HOME_DIR/include"
ln -sfn "$ROOT/bin" "$HOME_DIR/bin"
ln -sfn "$ROOT/nvvm" "$HOME_DIR/nvvm"
for lib in "$ROOT"/lib/lib*.so.*; do
  name=$(basename "$lib")
  ln -sfn "$lib" "$HOME_DIR/lib/$name"
  ln -sfn "$lib" "$HOME_DIR/lib/${name%%.so.*}.so"
done

# 3. libcuda.so comes with the GPU driver, not with the toolkit wheels. Link against a stub that
#    has every driver symbol cudarc may call; at run time the driver's real libcuda.so.1 is used.
if [ ! -f "$HOME_DIR/lib/libcuda.so" ]; then
  cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -1)
  if [ -z "$cudarc_src" ]; then
    cargo fetch --locked
    cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -1)
  fi
  grep -o 'load::<_F>("cu[A-Za-z0-9_]*")' "$cudarc_src/src/driver/sys/mod.rs" \
    | sed 's/.*("\(.*\)")/void \1(void) {}/' | sort -u > "$TOOLKIT/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$HOME_DIR/lib/libcuda.so" "$TOOLKIT/libcuda_stub.c"
fi

export CUDA_HOME="$HOME_DIR"
# Its own target folder: the CUDA build neither invalidates nor overwrites the CPU build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
export PATH="$ROOT/bin:$PATH"
export LD_LIBRARY_PATH="$HOME_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "nvcc: $(nvcc --version | tail -1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
start=$(date +%s)
cargo "${CARGO_SUBCOMMAND:-build}" --locked --features cuda "$@"
echo "cuda build finished in $(( $(date +%s) - start )) s"
