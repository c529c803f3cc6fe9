#!/usr/bin/env python3
"""Writes a GGUF of the real gpt-oss-20b shape with random weights, for llama.cpp's llama-bench.

The byte budget is the one `ossterm bench --synthetic gpt-oss-20b` runs: Q4_0 experts (what
ossterm keeps the Intel int4 experts as), F16 attention, embedding and lm_head (F16 and ossterm's
bf16 read the same bytes), F32 norms, biases, sinks and routers. With `--dense q8_0` the attention projections and the
output head are Q8_0 instead (llama.cpp's 8-bit blocks: the byte budget of ossterm's
`--dtype q8-dense`, which keeps them in 8 bits with f32 rather than f16 block scales). Names, shapes and metadata keys
are the ones llama.cpp's gpt-oss loader (LLM_ARCH_OPENAI_MOE, `src/models/openai-moe.cpp`)
reads, as `convert_hf_to_gguf.py` writes them; the vocabulary is the real o200k_harmony one
(gpt2-style BPE, pre-tokenizer "gpt-4o"), since llama-bench draws its random tokens from it.

Needs numpy and llama.cpp's gguf-py: PYTHONPATH=/path/to/llama.cpp/gguf-py.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import gguf
except ImportError as err:  # the message names the fix, not just the module
    sys.exit(
        f"write_gguf.py: cannot import gguf ({err}); put llama.cpp's gguf-py on the path: "
        "PYTHONPATH=/work/llamacpp/llama.cpp/gguf-py"
    )

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = REPO_ROOT / "tests/fixtures/o200k_harmony/tokenizer.json"
ARCH = "gpt-oss"


@dataclass(frozen=True)
class Shape:
    """gpt-oss-20b's config.json (the same numbers as ossterm's `Config::gpt_oss_20b`)."""

    vocab_size: int = 201_088
    hidden_size: int = 2880
    intermediate_size: int = 2880
    num_hidden_layers: int = 24
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    head_dim: int = 64
    num_local_experts: int = 32
    num_experts_per_tok: int = 4
    sliding_window: int = 128
    max_position_embeddings: int = 131_072
    rms_norm_eps: float = 1e-5
    rope_theta: float = 150_000.0
    rope_factor: float = 32.0
    rope_original_max_position_embeddings: int = 4096
    bos_token_id: int = 199_998  # <|startoftext|>
    eos_token_id: int = 200_002  # <|return|>
    pad_token_id: int = 199_999  # <|endoftext|>


Q4_0 = gguf.GGMLQuantizationType.Q4_0
Q4_0_BLOCK_LEN, Q4_0_BLOCK_BYTES = gguf.GGML_QUANT_SIZES[Q4_0]
Q8_0 = gguf.GGMLQuantizationType.Q8_0
Q8_0_BLOCK_LEN, Q8_0_BLOCK_BYTES = gguf.GGML_QUANT_SIZES[Q8_0]
# The quantized kinds: (GGML type, weights per block, bytes per block).
QUANTIZED = {"q4_0": (Q4_0, Q4_0_BLOCK_LEN, Q4_0_BLOCK_BYTES), "q8_0": (Q8_0, Q8_0_BLOCK_LEN, Q8_0_BLOCK_BYTES)}


@dataclass
class Planned:
    """One tensor: its GGUF name, numpy shape in elements (GGUF's order reversed), type and
    a generator of its data."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "q4_0", "q8_0", "f16" or "f32"
    make: Callable[[np.random.Generator], np.ndarray]

    def stored(self) -> tuple[tuple[int, ...], np.dtype, int]:
        """Shape, dtype and byte count as gguf-py's writer takes them (bytes for Q4_0, Q8_0)."""
        n = math.prod(self.shape)
        if self.kind in QUANTIZED:
            _, block_len, block_bytes = QUANTIZED[self.kind]
            row_bytes = self.shape[-1] // block_len * block_bytes
            return (*self.shape[:-1], row_bytes), np.dtype(np.uint8), n // block_len * block_bytes
        dtype = np.dtype(np.float16 if self.kind == "f16" else np.float32)
        return self.shape, dtype, n * dtype.itemsize


def f16_binade_bits(rng: np.random.Generator, count: int, amplitude: float) -> np.ndarray:
    """`count` f16 values (as uint16 bits) with random signs and mantissas in one binade
    [2^(e-1), 2^e), 2^e the largest power of two <= `amplitude`: finite, nonzero, and
    amplitude/4 <= |v| < amplitude. Built in place on one uint16 array: the embedding's 579M
    values stay 1.2 GB."""
    exponent = int(math.floor(math.log2(amplitude))) - 1 + 15
    if not 1 <= exponent <= 30:
        raise ValueError(f"amplitude {amplitude} is outside f16's normal range")
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint16)
    bits &= np.uint16(0x83FF)  # keep sign and mantissa
    bits |= np.uint16(exponent << 10)
    return bits


def random_f16(shape: tuple[int, ...], amplitude: float) -> Callable[[np.random.Generator], np.ndarray]:
    """A generator of f16 values of magnitude about `amplitude`."""
    return lambda rng: f16_binade_bits(rng, math.prod(shape), amplitude).view(np.float16).reshape(shape)


def random_f32(shape: tuple[int, ...], amplitude: float) -> Callable[[np.random.Generator], np.ndarray]:
    """A generator of f32 values uniform in (-amplitude, amplitude)."""
    return lambda rng: rng.uniform(-amplitude, amplitude, size=shape).astype(np.float32)


def ones_f32(shape: tuple[int, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    """A generator of ones (RMS norm weights)."""
    return lambda _rng: np.ones(shape, dtype=np.float32)


def q4_0_blocks(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """Random Q4_0 data for a tensor of `shape` elements (last dim a multiple of 32), as bytes
    [..., blocks * 18]: random nibbles and a finite f16 scale per block, so that the weights
    (nibble - 8) * scale lie within +-amplitude."""
    if shape[-1] % Q4_0_BLOCK_LEN != 0:
        raise ValueError(f"Q4_0 rows need a multiple of {Q4_0_BLOCK_LEN} elements, got {shape[-1]}")
    rows = math.prod(shape[:-1])
    blocks_per_row = shape[-1] // Q4_0_BLOCK_LEN
    data = rng.integers(0, 256, size=(rows * blocks_per_row, Q4_0_BLOCK_BYTES), dtype=np.uint8)
    # The scale is the block's first two bytes (little-endian f16); nibbles span -8..7 of it.
    scales = f16_binade_bits(rng, rows * blocks_per_row, amplitude / 8)
    data[:, 0] = (scales & 0xFF).astype(np.uint8)
    data[:, 1] = (scales >> 8).astype(np.uint8)
    return data.reshape(*shape[:-1], blocks_per_row * Q4_0_BLOCK_BYTES)


def random_q4_0(shape: tuple[int, ...], amplitude: float) -> Callable[[np.random.Generator], np.ndarray]:
    """A generator of Q4_0 bytes for a tensor of `shape` elements."""
    return lambda rng: q4_0_blocks(rng, shape, amplitude)


def q8_0_blocks(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """Random Q8_0 data for a tensor of `shape` elements (last dim a multiple of 32), as bytes
    [..., blocks * 34]: a finite f16 scale per block and codes in -127..127, so that the weights
    code * scale lie within +-amplitude."""
    if shape[-1] % Q8_0_BLOCK_LEN != 0:
        raise ValueError(f"Q8_0 rows need a multiple of {Q8_0_BLOCK_LEN} elements, got {shape[-1]}")
    rows = math.prod(shape[:-1])
    blocks_per_row = shape[-1] // Q8_0_BLOCK_LEN
    data = np.empty((rows * blocks_per_row, Q8_0_BLOCK_BYTES), dtype=np.uint8)
    scales = f16_binade_bits(rng, rows * blocks_per_row, amplitude / 127)
    data[:, 0] = (scales & 0xFF).astype(np.uint8)
    data[:, 1] = (scales >> 8).astype(np.uint8)
    codes = rng.integers(-127, 128, size=(rows * blocks_per_row, Q8_0_BLOCK_LEN), dtype=np.int8)
    data[:, 2:] = codes.view(np.uint8)
    return data.reshape(*shape[:-1], blocks_per_row * Q8_0_BLOCK_BYTES)


def random_dense(kind: str, shape: tuple[int, ...], amplitude: float) -> Callable[[np.random.Generator], np.ndarray]:
    """A generator of a dense weight in `kind` ("f16" or "q8_0") of magnitude about `amplitude`."""
    if kind == "q8_0":
        return lambda rng: q8_0_blocks(rng, shape, amplitude)
    return random_f16(shape, amplitude)


def tensor_name(kind: gguf.MODEL_TENSOR, layer: int | None = None) -> str:
    """The GGUF weight name llama.cpp looks up for `kind` (in layer `layer`)."""
    base = gguf.TENSOR_NAMES[kind]
    return (base.format(bid=layer) if layer is not None else base) + ".weight"


def bias_name(kind: gguf.MODEL_TENSOR, layer: int) -> str:
    """The GGUF bias name for `kind` in layer `layer`."""
    return gguf.TENSOR_NAMES[kind].format(bid=layer) + ".bias"


def plan_tensors(shape: Shape, dense: str = "f16") -> list[Planned]:
    """Every tensor of the model, in file order; the attention projections and the output head
    in `dense` ("f16" or "q8_0"). Shapes are numpy's (GGUF's ne reversed): llama.cpp's {n_embd,
    n_ff_exp, n_expert} is (n_expert, n_ff_exp, n_embd) here."""
    s = shape
    T = gguf.MODEL_TENSOR
    hidden, inter, experts = s.hidden_size, s.intermediate_size, s.num_local_experts
    q_dim = s.num_attention_heads * s.head_dim
    kv_dim = s.num_key_value_heads * s.head_dim
    # Uniform-init-like magnitudes (sqrt(3 / fan_in)), as ossterm's synthetic weights: the
    # residual stream stays finite through all layers, so every path runs on real numbers.
    a = lambda fan_in: math.sqrt(3.0 / fan_in)  # noqa: E731
    plan = [Planned(tensor_name(T.TOKEN_EMBD), (s.vocab_size, hidden), "f16", random_f16((s.vocab_size, hidden), 1.0))]
    for i in range(s.num_hidden_layers):
        plan += [
            Planned(tensor_name(T.ATTN_NORM, i), (hidden,), "f32", ones_f32((hidden,))),
            Planned(tensor_name(T.ATTN_POST_NORM, i), (hidden,), "f32", ones_f32((hidden,))),
        ]
        for kind, rows in ((T.ATTN_Q, q_dim), (T.ATTN_K, kv_dim), (T.ATTN_V, kv_dim)):
            plan += [
                Planned(tensor_name(kind, i), (rows, hidden), dense, random_dense(dense, (rows, hidden), a(hidden))),
                Planned(bias_name(kind, i), (rows,), "f32", random_f32((rows,), a(100 * hidden))),
            ]
        plan += [
            Planned(tensor_name(T.ATTN_OUT, i), (hidden, q_dim), dense, random_dense(dense, (hidden, q_dim), a(q_dim))),
            Planned(bias_name(T.ATTN_OUT, i), (hidden,), "f32", random_f32((hidden,), a(100 * hidden))),
            Planned(tensor_name(T.ATTN_SINKS, i), (s.num_attention_heads,), "f32", random_f32((s.num_attention_heads,), 1.0)),
            # A random router over random hidden states picks different experts per token.
            Planned(tensor_name(T.FFN_GATE_INP, i), (experts, hidden), "f32", random_f32((experts, hidden), a(hidden))),
            Planned(bias_name(T.FFN_GATE_INP, i), (experts,), "f32", random_f32((experts,), a(100))),
        ]
        for kind, rows, cols in (
            (T.FFN_GATE_EXP, inter, hidden),
            (T.FFN_UP_EXP, inter, hidden),
            (T.FFN_DOWN_EXP, hidden, inter),
        ):
            plan += [
                Planned(tensor_name(kind, i), (experts, rows, cols), "q4_0", random_q4_0((experts, rows, cols), a(cols))),
                Planned(bias_name(kind, i), (experts, rows), "f32", random_f32((experts, rows), a(100 * cols))),
            ]
    plan += [
        Planned(tensor_name(T.OUTPUT_NORM), (hidden,), "f32", ones_f32((hidden,))),
        Planned(tensor_name(T.OUTPUT), (s.vocab_size, hidden), dense, random_dense(dense, (s.vocab_size, hidden), a(hidden))),
    ]
    return plan


def load_vocab(tokenizer_path: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges from a Hugging Face tokenizer.json, padded to
    `vocab_size` with [PAD{i}] (as convert_hf_to_gguf.py's get_vocab_base does)."""
    try:
        tokenizer = json.loads(tokenizer_path.read_text(encoding="utf-8"))
        model = tokenizer["model"]
        vocab: dict[str, int] = model["vocab"]
        merges_raw = model["merges"]
        added = tokenizer.get("added_tokens", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"write_gguf.py: {tokenizer_path}: not a BPE tokenizer.json ({err!r})")
    if model.get("type") != "BPE":
        raise SystemExit(f"write_gguf.py: {tokenizer_path}: model.type is {model.get('type')!r}, expected 'BPE'")
    tokens: list[str | None] = [None] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for text, token_id in vocab.items():
        if not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise SystemExit(f"write_gguf.py: {tokenizer_path}: token {text!r} has id {token_id!r}, outside 0..{vocab_size}")
        tokens[token_id] = text
        types[token_id] = int(gguf.TokenType.NORMAL)
    for entry in added:
        token_id = entry.get("id")
        if not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise SystemExit(f"write_gguf.py: {tokenizer_path}: added token {entry!r} has an id outside 0..{vocab_size}")
        tokens[token_id] = entry["content"]
        special = entry.get("special", False)
        types[token_id] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    filled = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    # Newer tokenizer.json files store merges as pairs; GGUF wants "left right".
    merges = [" ".join(m) if isinstance(m, list) else str(m) for m in merges_raw]
    return filled, types, merges


def add_metadata(writer: gguf.GGUFWriter, shape: Shape, tokenizer_path: Path) -> None:
    """The keys llama.cpp's loader reads for gpt-oss (general + LLM_ARCH_OPENAI_MOE + vocab)."""
    s = shape
    writer.add_name(f"gpt-oss-20b shape, random weights, {s.num_hidden_layers} layers (ossterm bench)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(s.max_position_embeddings)
    writer.add_embedding_length(s.hidden_size)
    writer.add_block_count(s.num_hidden_layers)
    writer.add_feed_forward_length(s.intermediate_size)
    writer.add_head_count(s.num_attention_heads)
    writer.add_head_count_kv(s.num_key_value_heads)
    writer.add_key_length(s.head_dim)
    writer.add_value_length(s.head_dim)
    writer.add_rope_freq_base(s.rope_theta)
    writer.add_layer_norm_rms_eps(s.rms_norm_eps)
    writer.add_expert_count(s.num_local_experts)
    writer.add_expert_used_count(s.num_experts_per_tok)
    writer.add_sliding_window(s.sliding_window)
    writer.add_expert_feed_forward_length(s.intermediate_size)
    writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(s.rope_factor)
    writer.add_rope_scaling_orig_ctx_len(s.rope_original_max_position_embeddings)
    tokens, types, merges = load_vocab(tokenizer_path, s.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-4o")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(s.bos_token_id)
    writer.add_eos_token_id(s.eos_token_id)
    writer.add_pad_token_id(s.pad_token_id)


def planned_bytes(plan: list[Planned]) -> int:
    """Tensor data bytes of the file (alignment padding left out: < 32 B a tensor)."""
    return sum(p.stored()[2] for p in plan)


def write(path: Path, shape: Shape, tokenizer_path: Path, seed: int, min_free_bytes: int, dense: str = "f16") -> int:
    """Writes the file (tensors generated one at a time: memory stays ~1.2 GB at the largest,
    the embedding) and returns its size in bytes."""
    plan = plan_tensors(shape, dense)
    need = planned_bytes(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free + (path.stat().st_size if path.exists() else 0)
    if free - need < min_free_bytes:
        raise SystemExit(
            f"write_gguf.py: {path}: writing {need / 1e9:.1f} GB would leave {(free - need) / 1e9:.1f} GB free "
            f"on its disk, under --min-free-gb {min_free_bytes / 1e9:.0f}"
        )
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, ARCH)
    add_metadata(writer, shape, tokenizer_path)
    for p in plan:
        stored_shape, dtype, nbytes = p.stored()
        raw_dtype = QUANTIZED[p.kind][0] if p.kind in QUANTIZED else None
        writer.add_tensor_info(p.name, stored_shape, dtype, nbytes, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for index, p in enumerate(plan):
        data = p.make(rng)
        _, dtype, nbytes = p.stored()
        if data.dtype != dtype or data.nbytes != nbytes:
            raise AssertionError(f"{p.name}: generated {data.dtype} {data.nbytes} B, planned {dtype} {nbytes} B")
        writer.write_tensor_data(data)
        if index % 20 == 0 or index == len(plan) - 1:
            print(f"  {index + 1}/{len(plan)} tensors", file=sys.stderr, flush=True)
    writer.close()
    return path.stat().st_size


def check(path: Path, shape: Shape, dense: str = "f16") -> None:
    """Reads the file back with gguf-py and fails unless every planned tensor is there with
    its type and shape."""
    reader = gguf.GGUFReader(path)
    found = {t.name: t for t in reader.tensors}
    types = {"q4_0": Q4_0, "q8_0": Q8_0, "f16": gguf.GGMLQuantizationType.F16, "f32": gguf.GGMLQuantizationType.F32}
    plan = plan_tensors(shape, dense)
    if len(found) != len(plan):
        raise SystemExit(f"write_gguf.py: {path}: {len(found)} tensors read back, {len(plan)} written")
    for p in plan:
        t = found.get(p.name)
        if t is None:
            raise SystemExit(f"write_gguf.py: {path}: tensor {p.name} missing when read back")
        if t.tensor_type != types[p.kind] or tuple(int(d) for d in reversed(t.shape)) != p.shape:
            raise SystemExit(
                f"write_gguf.py: {path}: tensor {p.name} read back as {t.tensor_type.name} "
                f"{list(reversed(t.shape))}, written as {p.kind} {list(p.shape)}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the .gguf to write (keep it outside the repo)")
    parser.add_argument("--layers", type=int, default=Shape.num_hidden_layers, help="layers (default: 24, the real shape)")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="a BPE tokenizer.json (default: the repo's o200k_harmony)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dense",
        choices=("f16", "q8_0"),
        default="f16",
        help="attention projections and output head: f16 (default) or q8_0 (ossterm's --dtype q8-dense budget)",
    )
    parser.add_argument("--min-free-gb", type=float, default=15.0, help="refuse to leave less free on the disk (default 15)")
    args = parser.parse_args(argv)
    if not 1 <= args.layers <= Shape.num_hidden_layers:
        parser.error(f"--layers {args.layers}: must be 1..{Shape.num_hidden_layers}")
    shape = Shape(num_hidden_layers=args.layers)
    size = write(args.out, shape, args.tokenizer, args.seed, int(args.min_free_gb * 1e9), args.dense)
    check(args.out, shape, args.dense)
    print(f"wrote {args.out}: {size} bytes, {args.layers} layers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
