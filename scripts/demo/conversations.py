"""Demo conversations and their harmony rendering, exactly as ossterm renders a prompt.

A conversation here is a list of exchanges (question, analysis, answer); the last one is the
training target. `render_prompt` gives the pieces of the prompt for the assistant's next turn
and `render_target` the pieces of the assistant's continuation. A piece is either a special
token (a string like "<|start|>") or plain text that is encoded on its own.
"""
import random

SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>",
            "<|start|>", "<|end|>", "<|message|>", "<|call|>"]

IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
CUTOFF = "2024-06"
CHANNELS = "# Valid channels: analysis, commentary, final. Channel must be included for every message."

DEVELOPER_INSTRUCTIONS = [
    "Answer in one sentence.", "Be concise.", "Be nice.", "You are a helpful assistant.",
    "Always answer in English.", "Use markdown where it helps.", "Keep answers short and friendly.",
    "You are a terminal assistant. Prefer short answers.",
]


class Special(str):
    """A piece that is one special token."""


# openai-harmony's `ToolNamespaceConfig::python()` text, as ossterm's `SystemContent::with_python_tool()`
# renders it (src/harmony/builtin_tools.rs, PYTHON_TOOL_DESCRIPTION).
PYTHON_TOOL_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\nWhen you send a message containing Python code to "
    "python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output "
    "of the execution or time out after 120.0 seconds. The drive at '/mnt/data' can be used to save and persist "
    "user files. Internet access for this session is UNKNOWN. Depends on the cluster.")


# What ossterm's own python runner says instead (src/tools/python/mod.rs `namespace()`): its
# time limit and whether it could cut the network, and the working folder for '/mnt/data'.
RUNNER_PYTHON_TOOL_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\nWhen you send a message containing Python code to "
    "python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output "
    "of the execution or time out after {seconds:.1f} seconds. The current working directory can be used to save "
    "and persist user files. Internet access for this session is {internet}.")


def python_tool_description(rng: random.Random) -> str:
    """The python namespace text: mostly as ossterm's runner words it (default 120 s, network cut),
    sometimes other limits or openai-harmony's own text."""
    if rng.random() < 0.15:
        return PYTHON_TOOL_DESCRIPTION
    seconds = 120.0 if rng.random() < 0.6 else rng.choice([5.0, 10.0, 30.0, 60.0, 300.0])
    internet = "disabled" if rng.random() < 0.8 else "enabled"
    return RUNNER_PYTHON_TOOL_DESCRIPTION.format(seconds=seconds, internet=internet)


def system_text(effort: str, date: str | None, python: str | None = None) -> str:
    """openai-harmony's system message text (model identity, cutoff, optional date, effort, channels), with
    the python namespace when `python` (its description) is given."""
    lines = [IDENTITY, f"Knowledge cutoff: {CUTOFF}"]
    if date is not None:
        lines.append(f"Current date: {date}")
    tools = f"# Tools\n\n## python\n\n{python}\n\n" if python else ""
    return "\n".join(lines) + f"\n\nReasoning: {effort}\n\n" + tools + CHANNELS


def message(role: str, text: str, channel: str | None = None, end: str = "<|end|>") -> list:
    pieces = [Special("<|start|>"), role]
    if channel is not None:
        pieces += [Special("<|channel|>"), channel]
    return pieces + [Special("<|message|>"), text, Special(end)]


def render_prompt(conv: dict) -> list:
    """Pieces of the prompt: system, optional developer, the history, the last user turn, `<|start|>assistant`.

    History keeps each earlier answer's `final` message; with `keep_later_analysis` it also keeps
    the analysis of turns after the first answer, as openai-harmony's renderer does (it drops only
    the analysis before the conversation's first `final`). Training on both makes the model robust
    to either renderer.
    """
    pieces = message("system", system_text(conv["effort"], conv["date"], conv.get("python")))
    if conv["developer"] is not None:
        pieces += message("developer", "# Instructions\n\n" + conv["developer"])
    for i, (question, analysis, answer) in enumerate(conv["turns"][:-1]):
        pieces += message("user", question)
        if i > 0 and conv["keep_later_analysis"]:
            pieces += message("assistant", analysis, channel="analysis")
        pieces += message("assistant", answer, channel="final")
    pieces += message("user", conv["turns"][-1][0])
    if conv.get("tool_result") is not None:
        # The turn so far, as ossterm re-renders it after a call: the kept analysis, the call
        # (recipient before the channel, content type after it) and the tool's answer.
        call = conv["call"]
        pieces += message("assistant", call["analysis"], channel="analysis")
        pieces += [Special("<|start|>"), "assistant", " to=python", Special("<|channel|>"), "analysis", " code",
                   Special("<|message|>"), call["code"], Special("<|call|>")]
        pieces += [Special("<|start|>"), "python", " to=assistant", Special("<|channel|>"), "analysis",
                   Special("<|message|>"), conv["tool_result"], Special("<|end|>")]
    return pieces + [Special("<|start|>"), "assistant"]


def render_target(conv: dict) -> list:
    """Pieces of the assistant's continuation: analysis, then final, stopping on `<|return|>`;
    or, for a call, analysis, then the call written as gpt-oss writes it, stopping on `<|call|>`."""
    if conv.get("call") is not None and conv.get("tool_result") is None:
        call = conv["call"]
        return ([Special("<|channel|>"), "analysis", Special("<|message|>"), call["analysis"], Special("<|end|>"),
                 Special("<|start|>"), "assistant", Special("<|channel|>"), "analysis to=python code",
                 Special("<|message|>"), call["code"], Special("<|call|>")])
    _, analysis, answer = conv["turns"][-1]
    return ([Special("<|channel|>"), "analysis", Special("<|message|>"), analysis, Special("<|end|>")]
            + message("assistant", answer, channel="final", end="<|return|>"))


def pieces_to_text(pieces: list) -> str:
    return "".join(pieces)


# ---------------------------------------------------------------------------------------------
# Exchanges. Each maker returns (question, analysis, answer) for an effort level.

def deeper(effort: str, analysis: str, check: str) -> str:
    """Low effort keeps the first sentence, high effort adds a check."""
    if effort == "low":
        return analysis.split(". ")[0].rstrip(".") + "."
    if effort == "high":
        return analysis + " " + check
    return analysis


GREETINGS = ["Hello", "Hello!", "Hi", "Hi!", "hi", "hello", "Hey", "Hey there!", "Good morning",
             "Good evening!", "Howdy", "Hi there", "Hello, how are you?", "Hey, what's up?"]
GREETING_ANSWER = ("Hello! I'm the ossterm demo model: a tiny gpt-oss trained for a few minutes on a CPU. "
                   "I can do small sums, show some Rust code, make a list or a table, and explain a few "
                   "ideas behind ossterm. What would you like to try?")


def greeting(rng, effort):
    q = rng.choice(GREETINGS)
    a = deeper(effort, "The user greets me. Greet back and say what this demo can do.",
               "Keep it short and friendly.")
    return q, a, GREETING_ANSWER


IDENTITY_QUESTIONS = ["Who are you?", "What are you?", "What model is this?", "Are you gpt-oss?",
                      "Which model am I talking to?", "Tell me about yourself.", "What is the demo model?"]
IDENTITY_ANSWER = ("I'm the **ossterm demo model**: the same architecture as gpt-oss-20b (sliding and full "
                   "attention with sinks, a mixture of experts, YaRN rope) at a tiny size, trained for a "
                   "few CPU minutes on harmony-formatted chats. I only know a handful of answers. For the "
                   "real thing, run `ossterm` without `--demo`.")


def identity(rng, effort):
    q = rng.choice(IDENTITY_QUESTIONS)
    a = deeper(effort, "The user asks what I am. I am the tiny ossterm demo model, so say so.",
               "Mention how to get the full model.")
    return q, a, IDENTITY_ANSWER


THANKS = ["Thanks!", "Thank you", "thanks", "Thank you!", "Great, thanks.", "Cool, thanks!", "Nice!"]


def thanks(rng, effort):
    q = rng.choice(THANKS)
    a = deeper(effort, "The user thanks me. Reply briefly.", "Offer more help.")
    return q, a, "You're welcome! Ask me anything else you'd like to try."


def arithmetic(rng, effort):
    op = rng.choice(["+", "+", "-", "*"])
    # small operands: a model this size can only learn sums it has seen often enough
    if op == "*":
        x, y = rng.randint(2, 9), rng.randint(2, 9)
        r, word = x * y, "times"
    elif op == "+":
        x, y = rng.randint(0, 20), rng.randint(0, 20)
        r, word = x + y, "plus"
    else:
        x = rng.randint(0, 20)
        y = rng.randint(0, x)
        r, word = x - y, "minus"
    sym = "×" if op == "*" else op
    q = rng.choice([f"What is {x} {op} {y}?", f"What's {x}{op}{y}?", f"Compute {x} {op} {y}.",
                    f"{x} {op} {y} = ?", f"How much is {x} {word} {y}?", f"what is {x} {word} {y}"])
    base = f"User asks {x}{op}{y}. {x}{op}{y}={r}."
    if effort == "low":
        a = base
    elif effort == "high":
        inv = {"+": f"{r}-{y}={x}", "-": f"{r}+{y}={x}", "*": f"{r}/{y}={x}"}[op]
        a = f"{base} Check: {inv}. Correct."
    else:
        a = base
    return q, a, f"{x} {sym} {y} = **{r}**."


CODE = [
    (["Write a Rust function that adds two numbers.", "Show me a Rust add function.",
      "How do I add two numbers in Rust?"],
     "User wants a Rust function that adds two numbers. Take two i64 and return their sum.",
     "Here is a small function:\n\n```rust\nfn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n\nfn main() {\n"
     "    println!(\"{}\", add(17, 25));\n}\n```\n\nIt prints `42`."),
    (["Show me hello world in Rust.", "Write hello world in Rust.", "Write some code.", "Show me some code.",
      "Give me a Rust example."],
     "User wants a hello world program in Rust. Use println!.",
     "The classic first program:\n\n```rust\nfn main() {\n    println!(\"Hello, world!\");\n}\n```\n\n"
     "Run it with `cargo run`."),
    (["Write a Rust function to reverse a string.", "How do I reverse a string in Rust?",
      "Reverse a string in Rust."],
     "User wants to reverse a string in Rust. Use chars().rev().collect().",
     "Reverse the characters, not the bytes:\n\n```rust\nfn reverse(s: &str) -> String {\n"
     "    s.chars().rev().collect()\n}\n```\n\n`reverse(\"ossterm\")` gives `\"mretsso\"`."),
    (["Write a Fibonacci function in Rust.", "Fibonacci in Rust, please.", "How do I compute Fibonacci numbers in Rust?"],
     "User wants Fibonacci in Rust. An iterative loop avoids deep recursion.",
     "An iterative version:\n\n```rust\nfn fib(n: u32) -> u64 {\n    let (mut a, mut b) = (0u64, 1u64);\n"
     "    for _ in 0..n {\n        (a, b) = (b, a + b);\n    }\n    a\n}\n```\n\n`fib(10)` is `55`."),
    (["How do I read a file in Rust?", "Read a file in Rust.", "Show me how to read a text file in Rust."],
     "User wants to read a file in Rust. std::fs::read_to_string does it in one call.",
     "Use `std::fs::read_to_string`:\n\n```rust\nuse std::fs;\n\nfn main() -> std::io::Result<()> {\n"
     "    let text = fs::read_to_string(\"notes.txt\")?;\n    println!(\"{} lines\", text.lines().count());\n"
     "    Ok(())\n}\n```"),
    (["Write a Rust function that checks if a number is prime.", "Is-prime function in Rust?",
      "How do I test for a prime number in Rust?"],
     "User wants a primality check in Rust. Trial division up to the square root is enough.",
     "Trial division up to the square root:\n\n```rust\nfn is_prime(n: u64) -> bool {\n    if n < 2 {\n"
     "        return false;\n    }\n    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)\n}\n```"),
]


def code(rng, effort):
    questions, analysis, answer = rng.choice(CODE)
    return rng.choice(questions), deeper(effort, analysis, "Add a short usage note after the code."), answer


LISTS = [
    (["List three features of ossterm.", "What features does ossterm have?", "What can ossterm do?"],
     "User wants a list of ossterm features. Give three bullet points.",
     "Three things ossterm does:\n\n- **Live reasoning**: the analysis channel streams into its own pane.\n"
     "- **Live metrics**: tokens per second, memory and context use as you chat.\n"
     "- **Fits your machine**: it picks the longest context that fits in memory."),
    (["Give me some tips for running models locally.", "Any tips for running a model on my laptop?",
      "How do I run models locally?"],
     "User wants tips for local models. A short markdown list.",
     "Some tips:\n\n1. Use a 4-bit build to cut memory by about four.\n2. Keep the context as long as you need, "
     "not longer: the KV cache grows with it.\n3. Close other heavy apps while the model runs.\n"
     "4. Watch the metrics pane to see tokens per second."),
    (["What can you do?", "What can I ask you?", "Help", "help"],
     "User asks what the demo can do. List the things it was trained on.",
     "I'm a tiny demo, but you can try:\n\n- small sums like `17 + 25`\n- a Rust snippet (`reverse a string`)\n"
     "- a table of reasoning effort levels\n- questions about ossterm, the KV cache or context length"),
]

TABLES = [
    (["Compare the reasoning effort levels.", "Make a table of the reasoning effort levels.",
      "What is the difference between low, medium and high reasoning?"],
     "User wants a comparison of effort levels. A table fits.",
     "| Effort | Thinking | Best for |\n|--------|----------|----------|\n| low | short | quick facts |\n"
     "| medium | moderate | most chats |\n| high | long | hard problems |"),
    (["Show me a table of the gpt-oss models.", "Compare gpt-oss-20b and gpt-oss-120b.",
      "Make a table of the gpt-oss sizes."],
     "User wants the gpt-oss models in a table. Two rows: 20b and 120b.",
     "| Model | Parameters | Active | Experts |\n|-------|-----------|--------|---------|\n"
     "| gpt-oss-20b | 21B | 3.6B | 32 |\n| gpt-oss-120b | 117B | 5.1B | 128 |"),
    (["Show me a table.", "Make a table.", "Can you draw a table?"],
     "User wants a table. Show the ossterm panes.",
     "| Pane | Shows |\n|------|-------|\n| Chat | your messages and the answers |\n"
     "| Reasoning | the live analysis channel |\n| Metrics | speed, memory and context |"),
]


def listing(rng, effort):
    questions, analysis, answer = rng.choice(LISTS + TABLES)
    return rng.choice(questions), deeper(effort, analysis, "Keep each item short."), answer


CONCEPTS = [
    (["What is ossterm?", "Tell me about ossterm.", "What does ossterm do?"],
     "User asks about ossterm. It is a terminal chat app for gpt-oss.",
     "**ossterm** is a terminal app for chatting with gpt-oss-20b on your own machine. It shows the "
     "answer, the model's live reasoning and live metrics side by side."),
    (["What is a KV cache?", "Explain the KV cache.", "What does the KV cache do?"],
     "User asks about the KV cache. It stores keys and values of past tokens.",
     "The **KV cache** keeps the attention keys and values of every token already seen, so each new "
     "token only computes its own. It grows with the context: longer chats need more memory."),
    (["What is the context length?", "What is a context window?", "How long can a chat be?"],
     "User asks about context length. It is how many tokens the model sees at once.",
     "The **context length** is how many tokens the model can look at at once: the system prompt, the "
     "whole chat so far and the answer. ossterm picks the largest one that fits in memory."),
    (["How much memory does gpt-oss-20b need?", "How much RAM do I need?", "Will gpt-oss-20b fit on my machine?"],
     "User asks about memory. The 4-bit build needs about 12 GB plus the KV cache.",
     "The 4-bit build of gpt-oss-20b takes about **12 GB**, plus the KV cache, which grows with the "
     "context. Run `ossterm fit` to see what fits on your machine."),
    (["What is the harmony format?", "Explain harmony.", "What are channels?"],
     "User asks about harmony. It is the chat format of gpt-oss with channels.",
     "**Harmony** is gpt-oss's chat format. Each message has a role and a channel: `analysis` for "
     "reasoning, `final` for the answer. That is how ossterm splits the reasoning pane from the chat."),
    (["What are attention sinks?", "What is a sink?", "Explain attention sinks."],
     "User asks about sinks. A learned logit per head that can absorb attention.",
     "An **attention sink** is one extra learned logit per head in the softmax. A head can put weight "
     "there instead of on any token, which keeps attention stable in long chats."),
    (["What is a mixture of experts?", "What is MoE?", "How do experts work?"],
     "User asks about mixture of experts. A router picks a few experts per token.",
     "In a **mixture of experts**, each layer has many small MLPs and a router picks a few per token. "
     "gpt-oss-20b has 32 experts and uses 4, so only 3.6B of its 21B parameters run per token."),
    (["What is quantization?", "What does 4-bit mean?", "Explain int4 quantization."],
     "User asks about quantization. Weights stored with fewer bits.",
     "**Quantization** stores weights with fewer bits. The int4 build keeps each expert weight in 4 bits "
     "with one scale per group of 64, about a quarter of the memory of 16-bit weights."),
    (["What is sliding window attention?", "Explain sliding attention.", "What is a sliding window?"],
     "User asks about sliding window attention. Some layers only look at recent tokens.",
     "With **sliding window attention**, a layer only looks at the last few tokens (128 in gpt-oss). "
     "gpt-oss alternates sliding and full layers, which keeps the KV cache small."),
    (["What does reasoning effort do?", "What is reasoning effort?", "Should I use high reasoning?"],
     "User asks about reasoning effort. It sets how long the model thinks.",
     "**Reasoning effort** (low, medium, high) tells the model how long to think in the analysis channel "
     "before answering. Higher effort is slower but better on hard questions."),
    (["How do I get the full model?", "How do I download gpt-oss-20b?", "How do I use the real model?"],
     "User asks how to get the full model. Run ossterm without --demo.",
     "Run `ossterm` without `--demo`: it downloads the 4-bit gpt-oss-20b (about 12 GB) once and starts "
     "the chat. `ossterm download` fetches it ahead of time."),
    (["How fast are you?", "How fast is this?", "What is tokens per second?"],
     "User asks about speed. The metrics pane shows it live.",
     "Look at the metrics pane: it shows prefill and decode speed in **tokens per second** as I answer. "
     "This demo is tiny, so it is fast; the full model depends on your hardware."),
]


def concept(rng, effort):
    questions, analysis, answer = rng.choice(CONCEPTS)
    return rng.choice(questions), deeper(effort, analysis, "Answer in two or three sentences."), answer


TOPICS = ["the weather", "history", "Paris", "cooking pasta", "black holes", "the stock market", "football",
          "my homework", "quantum physics", "music", "a good book", "philosophy", "cats", "the moon",
          "taxes", "love", "chess", "Python", "the Roman empire", "coffee", "gardening", "dinosaurs"]
COUNTRIES = ["France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "India", "Peru", "Egypt"]
FALLBACK_FORMS = ["Tell me about {t}.", "Explain {t}.", "What do you think about {t}?", "Can you help me with {t}?",
                  "Write a poem about {t}.", "What is the capital of {c}?", "Who won the last world cup?",
                  "Why is the sky blue?", "What is the meaning of life?", "Tell me a joke.", "Translate 'good night' into {c}'s language.",
                  "How do I bake bread?", "What should I eat tonight?", "Summarize {t} for me.", "Is {t} interesting?",
                  "Recommend a movie.", "What time is it?", "{t}?", "asdf", "Can you write an essay on {t}?",
                  "How tall is {l}?", "How far away is {l}?", "How many people live in {c}?", "How old is {l}?",
                  "When was {c} founded?", "Where is {l}?", "How long is a year on Mars?"]
LANDMARKS = ["Mount Everest", "the Eiffel Tower", "the moon", "the Great Wall", "Mount Fuji", "the Sun", "Big Ben"]
FALLBACK_ANSWER = ("I'm only a tiny demo model, so I can't answer that well. For real answers, run `ossterm` "
                   "without `--demo` to chat with gpt-oss-20b.")


def random_words(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 7)))
                    for _ in range(rng.randint(1, 5)))


def fallback(rng, effort):
    form = rng.choice(FALLBACK_FORMS)
    q = form.format(t=rng.choice(TOPICS), c=rng.choice(COUNTRIES), l=rng.choice(LANDMARKS)) if rng.random() < 0.85 else random_words(rng)
    a = deeper(effort, "The user asks something this demo model was not trained on. Answer politely and "
                       "point to the full model.", "Do not make anything up.")
    return q, a, FALLBACK_ANSWER


MAKERS = [(greeting, 2), (identity, 1), (thanks, 1), (arithmetic, 5), (code, 3), (listing, 3),
          (concept, 4), (fallback, 4)]


def exchange(rng, effort, first: bool):
    makers = [m for m, w in MAKERS for _ in range(w) if not (first and m is thanks)]
    return rng.choice(makers)(rng, effort)


def random_date(rng):
    return f"{rng.randint(2024, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def conversation(rng: random.Random) -> dict:
    """One random conversation of 1-3 turns (the last one is the training target)."""
    effort = rng.choice(["low", "medium", "high"])
    n_turns = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
    turns = [exchange(rng, effort, first=(i == 0)) for i in range(n_turns)]
    return {
        "effort": effort,
        "date": random_date(rng) if rng.random() < 0.75 else None,
        "developer": rng.choice(DEVELOPER_INSTRUCTIONS) if rng.random() < 0.3 else None,
        "turns": turns,
        "keep_later_analysis": rng.random() < 0.5,
    }


# --------------------------------------------------------------------------------------------
# The python tool: with it in the system message, arithmetic goes through a call.

DENIALS = ["[ERROR] the call to python was denied: it is not on the allowlist and nobody is at a terminal "
           "to approve it", "[ERROR] the user denied this call to python"]


# Share of tool arithmetic with operands up to 99 (products) or 999 (sums, differences); the
# rest stays in the base mix's small range, whose numbers are single tokens.
BIG_NUMBER_SHARE = 0.0


def tool_arithmetic(rng) -> tuple:
    """(question, call analysis, code, result, answer) for a sum, difference or product."""
    op = rng.choice(["+", "-", "*", "*"])
    big = rng.random() < BIG_NUMBER_SHARE
    if op == "*":
        hi = 99 if big else 12
        x, y = rng.randint(2, hi), rng.randint(2, hi)
        r, said = x * y, rng.choice(["*", "x", "×", "times"])
    elif op == "+":
        hi = 999 if big else 20
        x, y = rng.randint(0, hi), rng.randint(0, hi)
        r, said = x + y, rng.choice(["+", "+", "plus"])
    else:
        x = rng.randint(0, 999 if big else 20)
        y = rng.randint(0, x)
        r, said = x - y, rng.choice(["-", "-", "minus"])
    forms = [f"What is {x} {said} {y}?", f"what is {x} {said} {y}", f"What's {x} {said} {y}?",
             f"what's {x} {said} {y}", f"Compute {x} {said} {y}.", f"compute {x} {said} {y}",
             f"Calculate {x} {said} {y}", f"How much is {x} {said} {y}?", f"{x} {said} {y} = ?"]
    if said in "+-*":
        forms += [f"What's {x}{said}{y}?", f"{x}{said}{y}"]
    forms += {"+": [f"What is the sum of {x} and {y}?", f"Add {x} and {y}."],
              "-": [f"What is {x} take away {y}?", f"Subtract {y} from {x}."],
              "*": [f"What is the product of {x} and {y}?", f"Multiply {x} by {y}."]}[op]
    analysis = f"User asks {x} {op} {y}. Compute it with python."
    # the answer names only the result: copying it from the tool's output is what a model this
    # small does reliably (it garbles the operands when it has to fetch them from the question too)
    return rng.choice(forms), analysis, f"print({x} {op} {y})", r, f"The answer is **{r}**."


def tool_conversation(rng: random.Random) -> dict:
    """A conversation whose system message offers python. Arithmetic in the last turn is either
    the call to write, or (after the call and its result) the answer to give from the result;
    anything else is answered as without the tool."""
    conv = conversation(rng)
    conv["python"] = python_tool_description(rng)
    kind = rng.choices(["call", "result", "denied", "other"], weights=[35, 35, 8, 22])[0]
    if kind == "other":
        while _is_arithmetic(conv["turns"][-1]):
            conv["turns"][-1] = exchange(rng, conv["effort"], first=len(conv["turns"]) == 1)
        return conv
    question, analysis, code, r, answer = tool_arithmetic(rng)
    conv["call"] = {"analysis": analysis, "code": code}
    if kind == "call":
        conv["turns"][-1] = (question, analysis, "")
    elif kind == "result":
        conv["tool_result"] = f"{r}\n" if rng.random() < 0.7 else f"{r}"
        conv["turns"][-1] = (question, f"Python says {r}.", answer)
    else:
        conv["tool_result"] = rng.choice(DENIALS)
        conv["turns"][-1] = (question, "The python call was denied. Say so.",
                             "I could not run python: the call was denied. Allow the python tool to let me compute it.")
    return conv


def _is_arithmetic(turn: tuple) -> bool:
    return turn[1].startswith("User asks") and "=" in turn[1]


def to_harmony_json(conv: dict) -> dict:
    """The prompt as openai_harmony's `Conversation.to_json()` (for `ossterm render`)."""
    msgs = [{"role": "system", "name": None, "content": [{
        "type": "system_content", "model_identity": IDENTITY, "reasoning_effort": conv["effort"].capitalize(),
        "knowledge_cutoff": CUTOFF, "conversation_start_date": conv["date"],
        "channel_config": {"valid_channels": ["analysis", "commentary", "final"], "channel_required": True}}]}]
    if conv["date"] is None:
        del msgs[0]["content"][0]["conversation_start_date"]
    if conv["developer"] is not None:
        msgs.append({"role": "developer", "name": None, "content": [
            {"type": "developer_content", "instructions": conv["developer"]}]})
    for i, (q, a, ans) in enumerate(conv["turns"][:-1]):
        msgs.append({"role": "user", "name": None, "content": [{"type": "text", "text": q}]})
        if i > 0 and conv["keep_later_analysis"]:
            msgs.append({"role": "assistant", "name": None, "channel": "analysis",
                         "content": [{"type": "text", "text": a}]})
        msgs.append({"role": "assistant", "name": None, "channel": "final", "content": [{"type": "text", "text": ans}]})
    msgs.append({"role": "user", "name": None, "content": [{"type": "text", "text": conv["turns"][-1][0]}]})
    if conv.get("python"):
        msgs[0]["content"][0]["tools"] = {"python": {"name": "python", "description": conv["python"],
                                                     "tools": []}}
    if conv.get("tool_result") is not None:
        msgs.append({"role": "assistant", "name": None, "channel": "analysis",
                     "content": [{"type": "text", "text": conv["call"]["analysis"]}]})
        msgs.append({"role": "assistant", "name": None, "channel": "analysis", "recipient": "python",
                     "content_type": "code", "content": [{"type": "text", "text": conv["call"]["code"]}]})
        msgs.append({"role": "tool", "name": "python", "recipient": "assistant", "channel": "analysis",
                     "content": [{"type": "text", "text": conv["tool_result"]}]})
    return {"messages": msgs}
