#!/usr/bin/env python3
"""Turns `ossterm bench --json` lines and `llama-bench -o jsonl` lines into one Markdown table:
each test's samples on both engines, the ratio of the means, and each engine's fraction of the
decode bound (measured bandwidth / bytes read per token) that ossterm's bench reports.

Standard library only. Usage:
  side_by_side.py --ossterm OSSTERM.jsonl --llama LLAMA.jsonl [--machine TEXT] [--note TEXT]...
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

FLASH_ATTN = {-1: "FA auto", 0: "FA off", 1: "FA on"}


class InputError(Exception):
    """Input that cannot make a table; the message names the file, line and key."""


@dataclass
class Row:
    """One table row: a test both engines ran."""

    test: str
    ossterm: list[float]
    llama: list[float]
    bound_tok_s: float | None  # decode rows only


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line of `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from err
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not JSON ({err.msg}): {line[:80]!r}") from err
        if not isinstance(value, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
        out.append((number, value))
    if not out:
        raise InputError(f"{path}: no results in it")
    return out


def field(obj: dict, key: str, kind: type, where: str):
    """obj[key] as `kind` (int, float or list of floats), or an InputError naming it."""
    if key not in obj:
        raise InputError(f"{where}: no {key!r}")
    value = obj[key]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is list and isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value
    ):
        return [float(v) for v in value]
    raise InputError(f"{where}: {key!r} is {value!r}, expected {'positive numbers' if kind is list else kind.__name__}")


def build_rows(ossterm: list[tuple[int, dict]], llama: list[tuple[int, dict]], ossterm_path: str, llama_path: str) -> list[Row]:
    """Pairs every ossterm test (prefill and decode of each depth row) with every llama-bench
    test of the same token counts and depth (one row per flash-attention setting)."""
    tests = []
    for number, obj in llama:
        where = f"{llama_path}:{number}"
        key = (field(obj, "n_prompt", int, where), field(obj, "n_gen", int, where), field(obj, "n_depth", int, where))
        tests.append((key, field(obj, "flash_attn", int, where), field(obj, "samples_ts", list, where), where))
    used = set()
    rows = []
    for number, obj in ossterm:
        where = f"{ossterm_path}:{number}"
        depth = field(obj, "depth", int, where)
        for kind, count_key, samples_key in (("pp", "pp", "pp_samples_tok_s"), ("tg", "tg", "tg_samples_tok_s")):
            count = field(obj, count_key, int, where)
            samples = field(obj, samples_key, list, where)
            if count == 0 or not samples:
                continue
            key = (count, 0, depth) if kind == "pp" else (0, count, depth)
            matches = [t for t in tests if t[0] == key]
            if not matches:
                raise InputError(
                    f"{llama_path}: no llama-bench result for {kind}{count} at depth {depth} "
                    f"(n_prompt {key[0]}, n_gen {key[1]}, n_depth {key[2]}), which {where} has"
                )
            bound = field(obj, "decode_bound_tok_s", float, where) if kind == "tg" else None
            for _, flash_attn, llama_samples, llama_where in sorted(matches, key=lambda t: t[1]):
                used.add(llama_where)
                rows.append(Row(label(kind, count, depth, flash_attn, len(matches)), samples, llama_samples, bound))
    for _, _, _, where in tests:
        if where not in used:
            print(f"side_by_side.py: {where}: no ossterm result to compare it with; left out", file=sys.stderr)
    return rows


def label(kind: str, count: int, depth: int, flash_attn: int, settings: int) -> str:
    """`decode, empty context (tg128)`, `decode at depth 4096 (tg32), llama.cpp FA off`, ..."""
    what = "prefill" if kind == "pp" else "decode"
    where = "empty context" if depth == 0 else f"depth {depth}"
    text = f"{what}, {where} ({kind}{count})"
    fa = FLASH_ATTN.get(flash_attn, f"flash_attn {flash_attn}")
    return f"{text}, llama.cpp {fa}" if settings > 1 or flash_attn != -1 else text


def mean(values: list[float]) -> float:
    """The mean of a non-empty list."""
    return sum(values) / len(values)


def samples_cell(values: list[float]) -> str:
    """`2.18 / 2.20 / 2.25 (mean 2.21)`."""
    digits = 1 if mean(values) >= 10 else 2
    listed = " / ".join(f"{v:.{digits}f}" for v in values)
    return f"{listed} (mean {mean(values):.{digits}f})" if len(values) > 1 else listed


def table(rows: list[Row]) -> str:
    """The Markdown table."""
    lines = [
        "| test | ossterm t/s | llama.cpp t/s | ossterm / llama.cpp | ossterm of bound | llama.cpp of bound |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = mean(row.ossterm) / mean(row.llama)
        if row.bound_tok_s:
            of_bound = [f"{100 * mean(v) / row.bound_tok_s:.0f}%" for v in (row.ossterm, row.llama)]
        else:
            of_bound = ["", ""]
        lines.append(
            f"| {row.test} | {samples_cell(row.ossterm)} | {samples_cell(row.llama)} | **{ratio:.2f}x** | {of_bound[0]} | {of_bound[1]} |"
        )
    return "\n".join(lines)


def bound_note(ossterm: list[tuple[int, dict]], path: str) -> str:
    """How the bound was made, from ossterm's own figures (each run measures its bandwidth)."""
    parts = []
    for number, obj in ossterm:
        where = f"{path}:{number}"
        if field(obj, "tg", int, where) == 0:
            continue
        parts.append(
            f"{field(obj, 'decode_bound_tok_s', float, where):.2f} tok/s at depth {field(obj, 'depth', int, where)} "
            f"({field(obj, 'memory_bandwidth_bytes_s', float, where) / 1e9:.1f} GB/s / "
            f"{field(obj, 'decode_bytes_per_token', float, where) / 1e9:.2f} GB a token)"
        )
    return (
        "Bound: memory bandwidth (ossterm bench's multi-threaded read of 512 MiB, best of 4, "
        f"measured in each run) / the bytes ossterm reads per token: {'; '.join(parts)}. Both "
        "engines read the same weight bytes; the KV cache counted is ossterm's."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ossterm", type=Path, required=True, help="ossterm bench --json output (one object per line)")
    parser.add_argument("--llama", type=Path, required=True, help="llama-bench -o jsonl output")
    parser.add_argument("--machine", default=None, help="a line naming the machine")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the table")
    args = parser.parse_args(argv)
    try:
        ossterm = read_jsonl(args.ossterm)
        llama = read_jsonl(args.llama)
        rows = build_rows(ossterm, llama, str(args.ossterm), str(args.llama))
        note = bound_note(ossterm, str(args.ossterm))
    except InputError as err:
        print(f"side_by_side.py: {err}", file=sys.stderr)
        return 1
    if args.machine:
        print(args.machine)
        print()
    print(table(rows))
    print()
    print(note)
    for line in args.note:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
