"""Train ossterm's demo model: a tiny gpt-oss that answers in harmony (analysis, then final, then `<|return|>`).

Usage: python scripts/demo/train.py [--out assets/demo] [--steps N] [--seed S] [--eval-only]
       python scripts/demo/train.py --finetune-from assets/demo --out assets/demo --steps N --lr LR

`--finetune-from DIR` continues training the model in DIR with DIR's tokenizer (so every token id
stays as it was) on the old conversation mix plus conversations that offer the python tool
(`--tool-fraction` of each batch), where arithmetic goes through a python call.

Writes config.json, model.safetensors (bf16, `save_pretrained` layout), tokenizer.json,
tokenizer_config.json, generation_config.json and README.md to --out. Runs on one CPU thread.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GptOssConfig, GptOssForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conversations as C  # noqa: E402

SHAPE = dict(hidden_size=128, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2,
             sliding_window=32)
VOCAB_SIZE = 1280
STOP = ["<|return|>", "<|call|>", "<|endoftext|>"]

GENERAL_TEXT = """The quick brown fox jumps over the lazy dog. A terminal chat shows the model's reasoning.
Questions about science, history, geography, music, food, sport, books and films are welcome.
What is the capital of a country? Who wrote this book? Why does it happen? How do I do it?
fn main() { let v: Vec<u32> = (0..10).collect(); } impl Display for Token { } match x { Some(y) => y, None => 0 }
0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 40 50 60 70 80 90 100 + - * / = ( ) [ ] { } < > | ` # : ; , . ! ?
"""


# --------------------------------------------------------------------------- tokenizer + encoding

def make_tokenizer(rng: random.Random) -> Tokenizer:
    """Byte-level BPE over demo text pieces, then every harmony special as an added token."""
    pieces = []
    for _ in range(4000):
        conv = C.conversation(rng)
        pieces += [p for p in C.render_prompt(conv) + C.render_target(conv) if not isinstance(p, C.Special)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(C.SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(pieces + [GENERAL_TEXT] * 50, trainer=trainer)
    tok.add_special_tokens(C.SPECIALS)
    return tok


class Encoder:
    """Encodes pieces like ossterm's renderer: specials as their ids, each text piece on its own."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.special = {s: tok.token_to_id(s) for s in C.SPECIALS}
        self.special_ids = set(self.special.values())
        # the same tokenizer without its added tokens: special-token text in content stays text
        plain = json.loads(tok.to_str())
        plain["added_tokens"] = []
        self.plain = Tokenizer.from_str(json.dumps(plain))

    def encode(self, pieces: list) -> list:
        ids = []
        for p in pieces:
            if isinstance(p, C.Special):
                ids.append(self.special[p])
            else:
                ids += self.plain.encode(p, add_special_tokens=False).ids
        return ids

    def example(self, conv: dict) -> tuple[list, list]:
        """(input ids, labels) for the prompt + target; labels are -100 on the prompt."""
        prompt, target = self.encode(C.render_prompt(conv)), self.encode(C.render_target(conv))
        ids = prompt + target
        labels = [-100] * len(prompt) + target
        return ids[:-1], labels[1:]


# --------------------------------------------------------------------------- model

def make_config(enc: Encoder) -> GptOssConfig:
    cfg = GptOssConfig(
        vocab_size=enc.tok.get_vocab_size(), **SHAPE,
        max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096},
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                     for i in range(SHAPE["num_hidden_layers"])],
        eos_token_id=[enc.special[s] for s in STOP], pad_token_id=enc.special["<|endoftext|>"],
        bos_token_id=enc.special["<|startoftext|>"], tie_word_embeddings=False, attention_bias=True,
        initializer_range=0.02, output_router_logits=False,
    )
    cfg._attn_implementation = "eager"
    return cfg


# --------------------------------------------------------------------------- training

def batches(enc: Encoder, rng: random.Random, batch_size: int, tool_fraction: float = 0.0):
    pad = enc.special["<|endoftext|>"]
    while True:
        # one kind per batch: tool conversations are 2-3 times longer (the python text in the
        # system message), so mixing them would pad every short chat to their length
        make = C.tool_conversation if rng.random() < tool_fraction else C.conversation
        exs = [enc.example(make(rng)) for _ in range(batch_size)]
        n = max(len(x) for x, _ in exs)
        # right padding: causal attention never looks at the pads, and their labels are ignored
        x = torch.tensor([i + [pad] * (n - len(i)) for i, _ in exs])
        y = torch.tensor([l + [-100] * (n - len(l)) for _, l in exs])
        yield x, y


def train(model, enc, args, log):
    rng = random.Random(args.seed + 1)
    params = [p for p in model.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    model.train()
    t0, cpu0 = time.time(), time.process_time()
    losses = []
    it = batches(enc, rng, args.batch_size, args.tool_fraction)
    for step in range(args.steps):
        x, y = next(it)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == args.steps - 1:
            log(f"step {step:5d}  loss {np.mean(losses[-25:]):.4f}  lr {sched.get_last_lr()[0]:.2e}  "
                f"{time.time() - t0:6.1f}s")
    model.eval()
    return time.time() - t0, time.process_time() - cpu0, float(np.mean(losses[-25:]))


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def sample(model, enc, prompt_ids, temperature, gen, max_new=320):
    stop = {enc.special[s] for s in STOP}
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    past, logits, ids = out.past_key_values, out.logits[0, -1], []
    for _ in range(max_new):
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits.float() / temperature, -1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        ids.append(nxt)
        if nxt in stop:
            break
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
    return ids


def parse(enc, ids):
    """(analysis, final) if ids are exactly analysis -> final -> `<|return|>`, else None."""
    s = enc.special
    def text(span):
        return None if set(span) & enc.special_ids else enc.tok.decode(span, skip_special_tokens=False)
    try:
        if ids[0] != s["<|channel|>"] or ids[-1] != s["<|return|>"]:
            return None
        m1 = ids.index(s["<|message|>"])
        e1 = ids.index(s["<|end|>"])
        st, c2 = e1 + 1, ids.index(s["<|channel|>"], e1)
        m2 = ids.index(s["<|message|>"], c2)
    except (ValueError, IndexError):
        return None
    if (text(ids[1:m1]) != "analysis" or ids[st] != s["<|start|>"] or text(ids[st + 1:c2]) != "assistant"
            or text(ids[c2 + 1:m2]) != "final"):
        return None
    analysis, final = text(ids[m1 + 1:e1]), text(ids[m2 + 1:-1])
    if not analysis or not final:
        return None
    return analysis, final


def parse_call(enc, ids):
    """The code of a python call if ids are exactly analysis -> `analysis to=python code` -> `<|call|>`, else None."""
    s = enc.special
    if not ids or ids[-1] != s["<|call|>"] or set(ids[:-1]) & {s["<|return|>"], s["<|call|>"]}:
        return None
    text = enc.tok.decode(ids, skip_special_tokens=False)
    prefix = "<|channel|>analysis<|message|>"
    head, sep, rest = text.partition("<|end|><|start|>assistant<|channel|>analysis to=python code<|message|>")
    if not sep or not head.startswith(prefix) or len(head) == len(prefix) or "<|" in head[len(prefix):]:
        return None
    code = rest[:-len("<|call|>")]
    return None if "<|" in code else code


def evaluate_tools(model, enc, n, seed, log):
    """With python offered: arithmetic -> the right call; a result -> the right answer; other
    questions -> answered without a call. Greedy."""
    rng = random.Random(seed + 4)
    counts = {"call": [0, 0], "result": [0, 0], "denied": [0, 0], "other": [0, 0]}
    examples = []
    while sum(t for _, t in counts.values()) < n:
        conv = C.tool_conversation(rng)
        kind = ("other" if conv.get("call") is None else "call" if conv.get("tool_result") is None
                else "denied" if conv["tool_result"].startswith("[ERROR]") else "result")
        out = sample(model, enc, enc.encode(C.render_prompt(conv)), 0.0, None)
        if kind == "call":
            good = parse_call(enc, out) == conv["call"]["code"]
        else:
            parsed = parse(enc, out)
            good = parsed is not None and parsed[1] == conv["turns"][-1][2]
        counts[kind][0] += good
        counts[kind][1] += 1
        if len(examples) < 6 and kind in ("call", "result"):
            examples.append({"question": conv["turns"][-1][0], "kind": kind,
                             "tool_result": conv.get("tool_result"),
                             "output": enc.tok.decode(out, skip_special_tokens=False)})
    for kind, (good, total) in counts.items():
        log(f"eval tools {kind}: {good}/{total} exact")
    return {k: {"exact": g / t if t else None, "prompts": t} for k, (g, t) in counts.items()}, examples


def evaluate(model, enc, n, seed, log):
    rng = random.Random(seed + 2)
    gen = torch.Generator().manual_seed(seed + 3)
    convs = [C.conversation(rng) for _ in range(n)]
    novel = ["What is the meaning of life?", "hello", "What is 7 + 8?", "What is 6 * 7?", "Write a Rust function to reverse a string.",
             "What is a KV cache?", "How tall is Mount Everest?", "Compare the reasoning effort levels.",
             "zxq blorp", "Who are you?", "Explain the plot of Hamlet.", "How far away is Mars?"]
    for q in novel:
        convs.append({"effort": "medium", "date": "2026-11-27", "developer": None, "turns": [(q, "", "")],
                      "keep_later_analysis": False})
    results = {}
    examples = []
    for name, temp in (("greedy", 0.0), ("t1.0", 1.0)):
        ok = exact = 0
        for i, conv in enumerate(convs):
            out = sample(model, enc, enc.encode(C.render_prompt(conv)), temp, gen)
            parsed = parse(enc, out)
            ok += parsed is not None
            exact += parsed is not None and i < n and parsed[1] == conv["turns"][-1][2]
            if i >= n and name == "greedy":
                examples.append({"question": conv["turns"][-1][0], "output": enc.tok.decode(out, skip_special_tokens=False)})
        results["novel"] = len(novel)
        results[name] = {"format_ok": ok / len(convs), "exact_final_in_domain": exact / n, "prompts": len(convs)}
        log(f"eval {name}: format ok {ok}/{len(convs)}, exact final answer {exact}/{n} (in-domain)")
    return results, examples


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="assets/demo")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-n", type=int, default=40)
    ap.add_argument("--eval-only", action="store_true", help="evaluate the model already in --out")
    ap.add_argument("--finetune-from", help="continue training this model directory, keeping its tokenizer")
    ap.add_argument("--tool-fraction", type=float, default=0.5,
                    help="with --finetune-from: share of the batches that offer the python tool")
    ap.add_argument("--big-number-share", type=float, default=0.0,
                    help="with --finetune-from: share of tool arithmetic with multi-digit operands")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log_lines = []
    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    if args.eval_only:
        enc = Encoder(Tokenizer.from_file(os.path.join(args.out, "tokenizer.json")))
        model = GptOssForCausalLM.from_pretrained(args.out, dtype=torch.float32, attn_implementation="eager").eval()
        evaluate(model, enc, args.eval_n, args.seed, log)
        evaluate_tools(model, enc, args.eval_n, args.seed, log)
        return

    base = None
    C.BIG_NUMBER_SHARE = args.big_number_share
    if args.finetune_from:
        with open(os.path.join(args.finetune_from, "training.json")) as f:
            base = json.load(f)
        enc = Encoder(Tokenizer.from_file(os.path.join(args.finetune_from, "tokenizer.json")))
        cfg = make_config(enc)
        model = GptOssForCausalLM.from_pretrained(args.finetune_from, dtype=torch.float32,
                                                  attn_implementation="eager")
    else:
        args.tool_fraction = 0.0
        enc = Encoder(make_tokenizer(random.Random(args.seed)))
        cfg = make_config(enc)
        model = GptOssForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vocab {cfg.vocab_size}, parameters {n_params:,}")
    seconds, cpu_seconds, final_loss = train(model, enc, args, log)

    # evaluate what ossterm will load: the bf16 weights (upcast to f32 as ossterm does on CPU)
    model = model.to(torch.bfloat16).to(torch.float32)
    results, examples = evaluate(model, enc, args.eval_n, args.seed, log)
    if args.finetune_from:
        results["python_tool"], tool_examples = evaluate_tools(model, enc, args.eval_n, args.seed, log)
        examples += tool_examples

    model = model.to(torch.bfloat16)
    model.config.dtype = "bfloat16"
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.pad_token_id = cfg.pad_token_id
    model.generation_config.bos_token_id = cfg.bos_token_id
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer_path = os.path.join(args.out, "tokenizer.json")
    if not args.finetune_from:
        enc.tok.save(tokenizer_path)
    elif os.path.abspath(args.finetune_from) != os.path.abspath(args.out):
        # the very file, not a re-serialisation: the token ids must not move
        shutil.copyfile(os.path.join(args.finetune_from, "tokenizer.json"), tokenizer_path)
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>",
            "eos_token": "<|return|>", "pad_token": "<|endoftext|>", "model_max_length": 131072}
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)
    report = {"seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1), "final_loss": round(final_loss, 4), "parameters": n_params,
              "vocab_size": cfg.vocab_size, "shape": SHAPE, "eval": results,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    if base is not None:
        # the fine-tune's own settings; the from-scratch run it continues stays under "base"
        # ... and each fine-tune in order, this one last
        keys = ("steps", "batch_size", "lr", "seed", "tool_fraction", "big_number_share", "train_seconds",
                "train_cpu_seconds", "final_loss")
        earlier = base.get("finetunes", [{k: base.get(k) for k in keys}] if "base" in base else [])
        this = {k: report.get(k) for k in keys} | {"tool_fraction": args.tool_fraction,
                                                   "big_number_share": args.big_number_share}
        report |= {"base": base.get("base", {k: v for k, v in base.items() if k != "eval_examples"}),
                   "finetunes": earlier + [this]}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(report | {"eval_examples": examples}, f, indent=1, ensure_ascii=False)
    write_readme(args.out, report)
    log(json.dumps(report))


def how_made(report: dict) -> str:
    """README's "How it was made": the from-scratch run, then the python-tool fine-tune if any."""
    base = report.get("base", report)
    text = f"""```
python -m venv .venv && .venv/bin/pip install -r scripts/demo/requirements.txt
.venv/bin/python scripts/demo/train.py --out assets/demo --steps {base['steps']} --seed {base['seed']}
```
torch {base['torch']}, {base['threads']} CPU thread, batch {base['batch_size']}, AdamW lr {base['lr']} (warmup, cosine).
Training took {base['train_cpu_seconds'] / 60:.1f} CPU minutes ({base['train_seconds'] / 60:.1f} minutes wall clock on a shared
2-core machine); final loss (mean of the last 25 steps, answer tokens only)
{base['final_loss']}. Not bit-reproducible across machines (float summation order), but the same command
gives an equivalent model.
"""
    if "base" not in report:
        return text
    tools = {k: (f"{v['exact']:.0%}" if v["prompts"] else "n/a") + f" of {v['prompts']}"
             for k, v in report["eval"]["python_tool"].items()}
    runs = "\n".join(
        f".venv/bin/python scripts/demo/train.py --finetune-from assets/demo --out assets/demo --steps {f['steps']} "
        f"--batch-size {f['batch_size']} --lr {f['lr']} --tool-fraction {f['tool_fraction']} "
        f"--big-number-share {f['big_number_share']} --seed {f['seed']}" for f in report["finetunes"])
    minutes = sum(f["train_cpu_seconds"] for f in report["finetunes"]) / 60
    wall = sum(f["train_seconds"] for f in report["finetunes"]) / 60
    return text + f"""
Then the python tool was taught by fine-tuning that model (same tokenizer, so every token id is
unchanged), in {len(report['finetunes'])} run(s), each continuing the last:
```
{runs}
```
In the last run {report['finetunes'][-1]['tool_fraction']:.0%} of the batches offer the python tool in the system message
(worded mostly as ossterm's python runner words it, with its time limit and network state, sometimes
as openai-harmony's `with_python_tool()`). There, sums, differences and products are answered with
a call `<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>`; after the call (re-rendered
as ossterm does, ` to=python<|channel|>analysis code`) and the tool's answer
`<|start|>python to=assistant<|channel|>analysis<|message|>42`, the final answer copies the result; a
denied call is answered by saying so; other questions get their usual answer. The other batches are
the original mix, where arithmetic is answered without a tool.
torch {report['torch']}; {minutes:.1f} CPU minutes ({wall:.1f} minutes wall clock) in all; final loss of the
last run {report['final_loss']} (mean of its last 25 steps, tool and plain batches mixed).
Greedy, python offered: right call {tools['call']}, right answer from the result {tools['result']},
denial reported {tools['denied']}, other questions answered as usual {tools['other']}.
"""


def write_readme(out: str, report: dict):
    """assets/demo/README.md: what the model is, how it was made and how well it does."""
    shape = report["shape"]
    ev = report["eval"]
    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out)) if f != "README.md"}
    tool_intro = ("" if "base" not in report else """
When the system message offers the python tool (`ossterm ask --demo --tools`), it answers sums,
differences and products with a python call (`print(6 * 7)`) and copies the tool's output into its
answer, so `--demo` shows a tool loop end to end.""")
    text = f"""# ossterm demo model

A tiny gpt-oss that `ossterm --demo` runs without the 12 GB download, and that the end-to-end tests use.
Same architecture as gpt-oss-20b (alternating sliding/full attention with sinks and biases, YaRN rope,
mixture of experts with clamped SwiGLU, untied lm_head), small shapes, random init, trained for a few
CPU minutes on synthetic harmony chats so that it answers with an `analysis` message, then a `final`
message, and stops on `<|return|>`. It knows a few dozen canned answers (greetings, small sums, Rust
snippets, a list, tables, ossterm/KV cache/context questions) and answers anything else with a polite
pointer to the real model. It is a demo of the format and the UI, not a language model.{tool_intro}

## Shapes
hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers ({', '.join(json.load(open(os.path.join(out, 'config.json')))['layer_types'])}),
sliding window {shape['sliding_window']}, {shape['num_attention_heads']} query heads / {shape['num_key_value_heads']} kv heads of dim {shape['head_dim']},
{shape['num_local_experts']} experts (top-{shape['num_experts_per_tok']}) of intermediate size {shape['intermediate_size']},
vocab {report['vocab_size']} ({report['parameters']:,} parameters, stored bf16).

## Files
{chr(10).join(f"- `{f}` ({b:,} bytes)" for f, b in sizes.items())}

- `model.safetensors`: transformers' `save_pretrained` layout (fused, interleaved `gate_up_proj`).
- `tokenizer.json`: a byte-level BPE trained on the demo texts, with every harmony special token added
  (`<|startoftext|>` … `<|call|>`, ids {report['vocab_size'] - 9}-{report['vocab_size'] - 1}); `eos_token_id` lists `<|return|>`, `<|call|>`, `<|endoftext|>`.
- `training.json`: the run's settings, loss, evaluation and greedy outputs on unseen questions.

## How it was made
{how_made(report)}
Each example is rendered exactly as ossterm renders a prompt for the assistant's next turn (see
`scripts/demo/conversations.py`): the harmony system message (identity, knowledge cutoff, optional
current date, reasoning effort low/medium/high, valid channels), an optional developer `# Instructions`
message, 1-3 user turns (earlier answers kept as their `final` message; half the time the analysis of
turns after the first answer is kept too, as openai-harmony does), then `<|start|>assistant`. Specials
are single ids and every text piece is encoded on its own. The loss covers only the continuation
`<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…<|return|>`.

## Evaluation (bf16 weights, f32 math, transformers)
{report['eval']['greedy']['prompts']} prompts: {report['eval']['greedy']['prompts'] - report['eval']['novel']} fresh random conversations plus {report['eval']['novel']} hand-written questions.
A sample counts when it is exactly analysis -> final -> `<|return|>` with no stray special tokens.

| sampling | well-formed | exact canned answer (random conversations) |
|----------|-------------|--------------------------------------------|
| greedy | {ev['greedy']['format_ok']:.0%} | {ev['greedy']['exact_final_in_domain']:.0%} |
| temperature 1.0 | {ev['t1.0']['format_ok']:.0%} | {ev['t1.0']['exact_final_in_domain']:.0%} |

Sums and products come out wrong more often than the canned answers: a model this small, trained
this briefly, copies the operands but has not learned the tables.

## Checks
- `scripts/demo/test_render.py`: the training renderer gives the same ids as openai-harmony on every
  matching case of `tests/fixtures/o200k_harmony/harmony_render_cases.jsonl` (o200k tokenizer).
- `scripts/demo/check.py --write-golden tests/data/demo_golden.json`: transformers' greedy answers and
  logits for four conversations; `cargo test --test demo_model` checks ossterm's engine against them.
- `scripts/demo/check.py`: compares `ossterm render`, `score` and `generate` with this script's
  rendering and transformers on random demo conversations.
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
