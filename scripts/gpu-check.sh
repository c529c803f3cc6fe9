#!/usr/bin/env bash
# The GPU check (issue 6): golden-logit fidelity on the tiny fixtures and speed on the synthetic
# real shape, on a CUDA machine that has no Rust toolchain and no network.
#
#   scripts/gpu-check.sh prepare   # here: CUDA build, then target/gpu-check/ (binary + fixtures)
#   scripts/gpu-check.sh run       # there, from the repo root with target/gpu-check carried
#   scripts/gpu-check.sh run --compare   # also candle's kernels (verify + bench) and a bf16
#                                        # bench, for A/B
#
# `run` needs the CUDA 13 runtime libraries (cuBLAS, cuRAND, nvrtc) that PyTorch's cu130 wheels
# ship; it finds them under python3's site-packages. It prints one summary at the end and
# writes every result to ${OUT:-target/gpu-check/out}. Budget: under 5 minutes on an H100 for
# the plain run (`--compare` adds about two; candle's quantized PTX is JIT-compiled on first use).
# When the fused kernels fail verification, the run checks candle's kernels too, to say which
# side is wrong.
#
# Reading verify: its f32 lines are the strict check of the kernels (the fused path with f32
# activations, Q4_0 experts, f32 tolerances). Its default lines run CUDA's default layout (f32
# activations over bf16 weights and KV cache), whose CPU twin (`--kernels fused` on the CPU)
# stays at a tenth of the default tolerances. Not run here: `--dtype bf16`, on which the tiny
# fixtures sit on a knife edge (README "GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=target/gpu-check

prepare() {
  scripts/build-cuda.sh
  local bin=${CARGO_TARGET_DIR:-target/cuda}/debug/ossterm
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/fixtures"
  strip -o "$BUNDLE/ossterm" "$bin"
  xz -T2 -6 "$BUNDLE/ossterm"
  for fixture in tiny-a-bf16 tiny-a-int4; do
    mkdir -p "$BUNDLE/fixtures/$fixture"
    cp tests/fixtures/$fixture/{config.json,model.safetensors,golden.json,golden.safetensors} \
      "$BUNDLE/fixtures/$fixture/"
  done
  du -sh "$BUNDLE"
  echo "carry $BUNDLE (limit 64 MiB) and run: scripts/gpu-check.sh run"
}

# The directory of PyTorch's CUDA 13 libraries, for LD_LIBRARY_PATH.
cuda_libs() {
  python3 - <<'EOF' 2>/dev/null || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for root in roots:
    for lib in glob.glob(os.path.join(root, "nvidia", "**", "libcublas.so.13*"), recursive=True):
        print(os.path.dirname(lib)); raise SystemExit
EOF
}

run() {
  local out=${OUT:-$BUNDLE/out}
  mkdir -p "$out"
  local bin=$BUNDLE/ossterm
  if [ ! -x "$bin" ]; then
    xz -dkf "$bin.xz" 2>/dev/null || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open('$bin.xz'), open('$bin','wb'))"
    chmod +x "$bin"
  fi
  local libs
  libs=$(cuda_libs)
  export LD_LIBRARY_PATH="${libs:+$libs:}${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1 \
    || echo "nvidia-smi failed" > "$out/gpu.txt"
  cat "$out/gpu.txt"
  local status=0
  step() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    if timeout "$limit" "$@" > "$out/$name.txt" 2>&1; then
      echo "ok    $name ($((SECONDS - start)) s)" | tee -a "$out/summary.txt"
    else
      echo "FAIL  $name (exit $?, $((SECONDS - start)) s): tail of $out/$name.txt" | tee -a "$out/summary.txt"
      tail -5 "$out/$name.txt" | sed 's/^/      /' | tee -a "$out/summary.txt"
      status=1
    fi
  }
  : > "$out/summary.txt"
  local compare=${1:-}
  step verify-fused 90 "$bin" verify --fixtures "$BUNDLE/fixtures" --device cuda:0
  if [ "$compare" = --compare ] || ! grep -q "^PASS" "$out/verify-fused.txt"; then
    step verify-candle 120 "$bin" verify --fixtures "$BUNDLE/fixtures" --device cuda:0 --dtype auto --kernels candle
  fi
  step bench-fused 150 "$bin" bench --synthetic gpt-oss-20b --device cuda:0 --pp 512 --tg 128 --depth 0,8192 --json
  if [ "$compare" = --compare ]; then
    step bench-candle 120 "$bin" bench --synthetic gpt-oss-20b --device cuda:0 --kernels candle --pp 512 --tg 32 --depth 0 --json
    step bench-bf16 120 "$bin" bench --synthetic gpt-oss-20b --device cuda:0 --dtype bf16 --pp 512 --tg 64 --depth 0 --json
  fi
  echo "---- summary ($(cat "$out/gpu.txt"))"
  cat "$out/summary.txt"
  for name in verify-fused verify-candle; do
    [ -f "$out/$name.txt" ] || continue
    grep -E "^(tiny-|PASS|FAIL)" "$out/$name.txt" | sed "s/^/$name: /" || true
  done
  for name in bench-fused bench-candle bench-bf16; do
    [ -f "$out/$name.txt" ] || continue
    python3 - "$out/$name.txt" "$name" <<'EOF' || true
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        peak = r.get("peak_device_bytes") or 0
        allocated = r.get("peak_allocated_bytes") or 0
        print(f"{sys.argv[2]}: depth {r['depth']}: pp{r['pp']} {r['pp_tok_s']:.0f} tok/s, "
              f"tg{r['tg']} {r['tg_tok_s']:.1f} tok/s ({r['decode_vs_bound']:.2f}x of "
              f"{r['decode_bound_tok_s']:.0f}), peak device {peak / 2**30:.2f} GiB sampled, "
              f"{allocated / 2**30:.2f} GiB allocated at the fullest")
EOF
  done
  return $status
}

case "${1:-}" in
  prepare) prepare ;;
  run) run "${2:-}" ;;
  *) echo "usage: $0 prepare | run [--compare]" >&2; exit 2 ;;
esac
