"""Check the demo model against ossterm's own renderer and engine.

Usage: python scripts/demo/check.py [--model assets/demo] [--ossterm target/debug/ossterm] [--n 8]
       python scripts/demo/check.py --write-golden tests/data/demo_golden.json

For a few demo conversations it compares, token for token:
- `ossterm render --json` of the conversation JSON with this script's rendering;
- `ossterm score --logits-out` with transformers' logits on the same prompt (f32 math on the bf16 weights);
- `ossterm generate --temperature 0` with transformers' greedy continuation.
A step whose ossterm command is missing or fails is reported and skipped, so it can run while
ossterm is still being built.

--write-golden writes what `tests/demo_model.rs` checks the engine against: for a few fixed
conversations, the conversation JSON, the rendered prompt ids, transformers' greedy continuation
(with the top-two logit margin at each step) and the last prompt position's logits.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import GptOssForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conversations as C  # noqa: E402
from train import STOP, Encoder, parse  # noqa: E402


def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        return None, str(e)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["(no output)"])[0]
    return p.stdout, None


def int_list(value):
    """The first list of ints in a JSON value (ossterm's JSON outputs name it differently per command)."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for key in ("ids", "generated", "tokens", "new_ids", "output_ids"):
        if isinstance(value, dict) and key in value and int_list(value[key]) is not None:
            return int_list(value[key])
    for v in items:
        found = int_list(v)
        if found is not None:
            return found
    return None


@torch.no_grad()
def greedy(model, enc, ids, max_new):
    stop = {enc.special[s] for s in STOP}
    seq = list(ids)
    for _ in range(max_new):
        nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
        seq.append(nxt)
        if nxt in stop:
            break
    return seq[len(ids):]


GOLDEN_CONVERSATIONS = {
    "kv_cache": {"effort": "medium", "date": "2026-11-27", "developer": None, "keep_later_analysis": False,
                 "turns": [("What is a KV cache?", "", "")]},
    "rust_code": {"effort": "low", "date": None, "developer": "Be concise.", "keep_later_analysis": False,
                  "turns": [("Write a Rust function to reverse a string.", "", "")]},
    "three_turns": {"effort": "high", "date": "2025-02-14", "developer": None, "keep_later_analysis": True,
                    "turns": [C.greeting(random.Random(1), "high"), C.concept(random.Random(2), "high"),
                              ("Compare the reasoning effort levels.", "", "")]},
    "unknown": {"effort": "medium", "date": "2026-01-05", "developer": None, "keep_later_analysis": False,
                "turns": [("How tall is Mount Everest?", "", "")]},
}


@torch.no_grad()
def write_golden(model, enc, path, max_new):
    out = {"special_ids": enc.special, "eos_ids": [enc.special[s] for s in STOP]}
    for name, conv in GOLDEN_CONVERSATIONS.items():
        ids = enc.encode(C.render_prompt(conv))
        seq, margins = list(ids), []
        logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
        last_logits = [round(x, 5) for x in logits.tolist()]
        for _ in range(max_new):
            top = torch.topk(logits, 2).values
            margins.append(round(float(top[0] - top[1]), 4))
            nxt = int(logits.argmax())
            seq.append(nxt)
            if nxt in out["eos_ids"]:
                break
            logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
        greedy_ids = seq[len(ids):]
        assert parse(enc, greedy_ids) is not None, f"{name}: the greedy answer is not well-formed"
        out[name] = {"conversation": C.to_harmony_json(conv), "ids": ids, "greedy": greedy_ids,
                     "greedy_margin": margins, "greedy_text": enc.tok.decode(greedy_ids, skip_special_tokens=False),
                     "last_logits": last_logits}
        print(f"{name}: {len(ids)} prompt ids, {len(greedy_ids)} greedy ids, smallest margin {min(margins):.3f}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="assets/demo")
    ap.add_argument("--ossterm", default="target/debug/ossterm")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-new", type=int, default=200)
    ap.add_argument("--write-golden", metavar="PATH")
    args = ap.parse_args()
    torch.set_num_threads(1)

    enc = Encoder(Tokenizer.from_file(os.path.join(args.model, "tokenizer.json")))
    model = GptOssForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    if args.write_golden:
        write_golden(model, enc, args.write_golden, args.max_new)
        return
    rng = random.Random(args.seed)
    convs = [C.conversation(rng) for _ in range(args.n)]
    tmp = tempfile.mkdtemp(prefix="demo-check-")
    failures = 0
    for i, conv in enumerate(convs):
        ids = enc.encode(C.render_prompt(conv))
        path = os.path.join(tmp, f"c{i}.json")
        with open(path, "w") as f:
            json.dump(C.to_harmony_json(conv), f)
        line = [f"conv {i} ({len(conv['turns'])} turns, {len(ids)} prompt ids):"]

        out, err = run([args.ossterm, "render", "--tokenizer", os.path.join(args.model, "tokenizer.json"),
                        "--conversation", path, "--json"])
        if err:
            line.append(f"render skipped ({err})")
        else:
            theirs = int_list(json.loads(out))
            same = theirs == ids
            failures += not same
            line.append("render same" if same else f"render DIFFERS (first diff at {next((k for k, (a, b) in enumerate(zip(ids, theirs)) if a != b), min(len(ids), len(theirs)))})")

        logits_path = os.path.join(tmp, f"c{i}.logits.safetensors")
        ids_arg = ",".join(map(str, ids))
        out, err = run([args.ossterm, "score", "--model", args.model, "--device", "cpu", "--ids", ids_arg,
                        "--logits-out", logits_path])
        if err:
            line.append(f"score skipped ({err})")
        else:
            theirs = load_file(logits_path)["logits"]
            ours = model(input_ids=torch.tensor([ids])).logits[0]
            diff = (theirs - ours).abs().max().item()
            failures += diff > 0.05
            line.append(f"logits max|diff| {diff:.4f}")

        out, err = run([args.ossterm, "generate", "--model", args.model, "--device", "cpu", "--ids", ids_arg,
                        "--temperature", "0", "--max-new-tokens", str(args.max_new), "--json"])
        if err:
            line.append(f"generate skipped ({err})")
        else:
            theirs = int_list(json.loads(out))
            ours = greedy(model, enc, ids, args.max_new)
            same = theirs == ours
            failures += not same
            parsed = parse(enc, ours)
            line.append(("greedy same" if same else "greedy DIFFERS") + (", well-formed" if parsed else ", malformed"))
        print(" ".join(line), flush=True)
    print(f"{failures} failed checks (conversations in {tmp})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
