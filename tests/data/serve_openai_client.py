"""Drives `ossterm serve --demo` with the official openai client; argv[1] is the base URL."""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=120)
question = [{"role": "user", "content": "What is a KV cache?"}]

reasoning, content, order = "", "", []
for chunk in client.chat.completions.create(
    model="ossterm-demo", messages=question, stream=True, temperature=0, max_tokens=80,
    reasoning_effort="low",
):
    if not chunk.choices:
        continue
    delta = chunk.choices[0].delta
    extra = delta.model_extra or {}
    if extra.get("reasoning"):
        assert extra.get("reasoning_content") == extra["reasoning"], extra
        reasoning += extra["reasoning"]
        order.append("r")
    if delta.content:
        content += delta.content
        order.append("c")
assert reasoning and content, (reasoning, content)
assert order.index("r") < order.index("c"), order
print("stream: reasoning then content")

whole = client.chat.completions.create(
    model="ossterm-demo", messages=question, temperature=0, max_completion_tokens=80,
)
assert whole.choices[0].message.content, whole
assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0, whole.usage
print("whole: content and usage")

try:
    client.chat.completions.create(model="ossterm-demo", messages=question, top_p=7)
    raise SystemExit("top_p=7 was accepted")
except openai.BadRequestError as error:
    assert error.status_code == 400
    assert error.body["param"] == "top_p", error.body
    print("bad request: 400 top_p")
