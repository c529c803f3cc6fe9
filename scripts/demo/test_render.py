"""Check conversations.py's renderer against openai-harmony's own renderings.

Usage: python scripts/demo/test_render.py [FIXTURES]   (default: tests/fixtures)

Every completion-mode case of o200k_harmony/harmony_render_cases.jsonl whose conversation has the
shape of a demo conversation (system message with default identity and channels, optional
developer instructions, user turns answered by analysis/final messages) is rendered with
conversations.py and the o200k tokenizer and compared id for id with the library's ids.
"""
import json
import os
import sys

from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conversations as C  # noqa: E402
from train import Encoder  # noqa: E402


def from_harmony_json(conv: dict):
    """The demo conversation dict for a harmony JSON conversation, or None if it has another shape."""
    msgs = conv["messages"]
    if not msgs or msgs[0]["role"] != "system":
        return None
    sysc = msgs[0]["content"][0]
    if (sysc.get("model_identity") != C.IDENTITY or sysc.get("knowledge_cutoff") != C.CUTOFF
            or sysc.get("tools") or sysc.get("reasoning_effort") not in ("Low", "Medium", "High")
            or sysc.get("channel_config", {}).get("valid_channels") != ["analysis", "commentary", "final"]):
        return None
    out = {"effort": sysc["reasoning_effort"].lower(), "date": sysc.get("conversation_start_date"),
           "developer": None, "turns": [], "keep_later_analysis": False}
    rest = msgs[1:]
    if rest and rest[0]["role"] == "developer":
        dev = rest[0]["content"][0]
        if dev.get("tools") or not dev.get("instructions"):
            return None
        out["developer"] = dev["instructions"]
        rest = rest[1:]
    analysis = None
    for m in rest:
        text = m["content"][0].get("text") if len(m["content"]) == 1 else None
        if text is None or m.get("recipient") or m.get("name"):
            return None
        if m["role"] == "user":
            out["turns"].append([text, None, None])
        elif m["role"] == "assistant" and out["turns"] and m.get("channel") == "analysis":
            out["turns"][-1][1] = text
            out["keep_later_analysis"] = True
        elif m["role"] == "assistant" and out["turns"] and m.get("channel") == "final":
            out["turns"][-1][2] = text
        else:
            return None
    turns = out["turns"]
    if not turns or turns[-1][1] is not None or turns[-1][2] is not None:
        return None
    if any(t[2] is None for t in turns[:-1]):
        return None
    # the library drops the analysis before the first final; later analysis is kept
    if turns[0][1] is not None and len(turns) > 1:
        turns[0][1] = None
    if any(t[1] is None for t in turns[1:-1]) and out["keep_later_analysis"]:
        return None
    out["turns"] = [tuple(t) for t in turns]
    return out


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../tests/fixtures")
    h = os.path.join(fixtures, "o200k_harmony")
    enc = Encoder(Tokenizer.from_file(os.path.join(h, "tokenizer.json")))
    checked = failed = 0
    names = set()
    for line in open(os.path.join(h, "harmony_render_cases.jsonl")):
        case = json.loads(line)
        if case["mode"] != "completion" or case["next_turn_role"] != "assistant" or not case["auto_drop_analysis"]:
            continue
        conv = from_harmony_json(case["conversation"])
        if conv is None:
            continue
        checked += 1
        names.add(case["name"])
        ours = enc.encode(C.render_prompt(conv))
        if ours != case["ids"]:
            failed += 1
            print(f"DIFFERS: {case['name']}\n  ours:   {C.pieces_to_text(C.render_prompt(conv))!r}\n  theirs: {case['text']!r}")
    print(f"cases: {', '.join(sorted(names))}")
    print(f"{checked - failed} passed, {failed} failed")
    sys.exit(1 if failed or checked == 0 else 0)


if __name__ == "__main__":
    main()
