#!/usr/bin/env bash
# ossterm vs llama.cpp on this machine, one engine at a time, same threads, same shape (the real
# gpt-oss-20b with random weights, same byte budget): tg128, pp512 and tg32 at depth 4096 with
# llama.cpp's flash attention off and on. Writes every raw result and a Markdown table (samples,
# means, ratio, each engine's fraction of the measured bandwidth bound) to OUT_DIR and prints
# the table.
#
# Needs: llama.cpp's llama-bench and a GGUF from scripts/llamacpp/write_gguf.py (both outside
# the repo; see README "Speed"), and a release build of ossterm (cargo build --release).
#
# Settings (environment, defaults in brackets):
#   LLAMACPP_DIR [/work/llamacpp]   LLAMA_BENCH [$LLAMACPP_DIR/build/bin/llama-bench]
#   GGUF [$LLAMACPP_DIR/gpt-oss-20b-shape.gguf]   GGUF_PY [$LLAMACPP_DIR/llama.cpp/gguf-py]
#   OSSTERM [target/release/ossterm]   THREADS [2]   REPEAT [3]   PP [512]   TG [128]
#   DEPTH [4096]   DEPTH_TG [32]   OUT_DIR [$LLAMACPP_DIR/side-by-side-<UTC time>]
#   DTYPE [auto]: ossterm's --dtype; q8-dense (8-bit attention and output weights) pairs with a
#   GGUF written with `write_gguf.py --dense q8_0`, the same byte budget.
# The layer count comes from the GGUF, so a small test file (write_gguf.py --layers 2) makes a
# small run of both engines: PP=16 TG=4 DEPTH=256 DEPTH_TG=2 REPEAT=2 GGUF=...-2l.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMACPP_DIR=${LLAMACPP_DIR:-/work/llamacpp}
LLAMA_BENCH=${LLAMA_BENCH:-$LLAMACPP_DIR/build/bin/llama-bench}
GGUF=${GGUF:-$LLAMACPP_DIR/gpt-oss-20b-shape.gguf}
GGUF_PY=${GGUF_PY:-$LLAMACPP_DIR/llama.cpp/gguf-py}
OSSTERM=${OSSTERM:-target/release/ossterm}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-3}
PP=${PP:-512}
TG=${TG:-128}
DEPTH=${DEPTH:-4096}
DEPTH_TG=${DEPTH_TG:-32}
DTYPE=${DTYPE:-auto}
OUT_DIR=${OUT_DIR:-$LLAMACPP_DIR/side-by-side-$(date -u +%Y%m%dT%H%M%SZ)}

fail() {
  echo "bench-vs-llamacpp.sh: $*" >&2
  exit 1
}

for name in THREADS REPEAT PP TG DEPTH DEPTH_TG; do
  value=${!name}
  [[ $value =~ ^[0-9]+$ && $value -ge 1 ]] || fail "$name=$value: expected a whole number >= 1"
done
[ -x "$LLAMA_BENCH" ] || fail "LLAMA_BENCH=$LLAMA_BENCH: not an executable (build llama.cpp's llama-bench; README \"Speed\")"
[ -f "$GGUF" ] || fail "GGUF=$GGUF: no such file (write it with scripts/llamacpp/write_gguf.py)"
case $DTYPE in
  auto) dense_note="16-bit attention/embedding/lm_head" ;;
  q8-dense) dense_note="8-bit attention and lm_head (ossterm --dtype q8-dense, f32 block scales; the GGUF's Q8_0, f16 scales), 16-bit embedding" ;;
  *) fail "DTYPE=$DTYPE: expected auto or q8-dense" ;;
esac
[ -x "$OSSTERM" ] || fail "OSSTERM=$OSSTERM: not an executable (cargo build --release)"
[ -d "$GGUF_PY/gguf" ] || fail "GGUF_PY=$GGUF_PY: not llama.cpp's gguf-py folder (it reads the GGUF's layer count)"

# Both engines run the GGUF's layer count: a mismatch would compare different models.
LAYERS=$(PYTHONPATH=$GGUF_PY python3 - "$GGUF" <<'EOF'
import sys
import gguf
field = gguf.GGUFReader(sys.argv[1]).fields.get("gpt-oss.block_count")
if field is None:
    sys.exit(f"{sys.argv[1]}: no gpt-oss.block_count: not a gpt-oss GGUF")
print(int(field.parts[field.data[0]][0]))
EOF
) || fail "GGUF=$GGUF: cannot read its layer count"

mkdir -p "$OUT_DIR"
OSSTERM_JSON=$OUT_DIR/ossterm.jsonl
LLAMA_JSON=$OUT_DIR/llama.jsonl
: >"$OSSTERM_JSON"
: >"$LLAMA_JSON"

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -o -w -E 'avx512_vnni|avx512_bf16|avx512fp16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
mem_gb=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
machine="Machine: $cpu, $(nproc) cores (${flags% }), $mem_gb GiB; $THREADS threads per engine; one engine at a time; $(date -u +%Y-%m-%d)."
llama_version=$(cat "$LLAMACPP_DIR/VERSION" 2>/dev/null || echo "llama.cpp (version unknown: no $LLAMACPP_DIR/VERSION)")
ossterm_version="ossterm $(git describe --always --dirty 2>/dev/null || echo unknown) ($OSSTERM)"
echo "$machine"
echo "$llama_version; $ossterm_version; $LAYERS layers; results in $OUT_DIR"
echo "load before starting: $(cut -d' ' -f1-3 /proc/loadavg) (the figures mean little on a busy machine)"

run() {
  local log=$1
  shift
  echo "+ $*" | tee -a "$OUT_DIR/commands.txt" >&2
  local start=$SECONDS
  "$@" 2>>"$OUT_DIR/$log" || fail "failed: $* (stderr in $OUT_DIR/$log)"
  echo "  ($((SECONDS - start)) s)" >&2
}

ossterm_bench=("$OSSTERM" bench --synthetic gpt-oss-20b --layers "$LAYERS" --device cpu --threads "$THREADS" --repeat "$REPEAT" --dtype "$DTYPE" --json)
run ossterm.err "${ossterm_bench[@]}" --depth 0 --pp "$PP" --tg "$TG" >>"$OSSTERM_JSON"
run ossterm.err "${ossterm_bench[@]}" --depth "$DEPTH" --pp 0 --tg "$DEPTH_TG" >>"$OSSTERM_JSON"

llama_bench=("$LLAMA_BENCH" -m "$GGUF" -t "$THREADS" -r "$REPEAT" -o jsonl)
run llama.err "${llama_bench[@]}" -p "$PP" -n "$TG" >>"$LLAMA_JSON"
run llama.err "${llama_bench[@]}" -p 0 -n "$DEPTH_TG" -d "$DEPTH" -fa off,on >>"$LLAMA_JSON"

python3 scripts/llamacpp/side_by_side.py --ossterm "$OSSTERM_JSON" --llama "$LLAMA_JSON" \
  --machine "$machine" \
  --note "Engines: $llama_version, llama-bench defaults otherwise (CPU backend, GGML_NATIVE, mmap, Q4_0 repack); $ossterm_version, bench --synthetic gpt-oss-20b. Same shape ($LAYERS layers) and weight bytes: Q4_0 experts, $dense_note. Raw results: $OUT_DIR." \
  | tee "$OUT_DIR/table.md"
