"""Drives `ossterm serve --demo` with the official openai client; argv[1] is the base URL."""
import json
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

# A tool call round trip: the tools go in, and a past call and its result come back as harmony.
weather = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
offered = client.chat.completions.create(
    model="ossterm-demo", messages=[{"role": "user", "content": "Weather in Oslo?"}],
    tools=weather, temperature=0, max_tokens=40,
)
choice = offered.choices[0]
assert choice.finish_reason in ("stop", "length", "tool_calls"), choice
if choice.finish_reason == "tool_calls":
    assert choice.message.tool_calls[0].function.name == "get_weather", choice
history = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
]
answered = client.chat.completions.create(
    model="ossterm-demo", messages=history, tools=weather, temperature=0, max_tokens=40,
)
assert answered.choices[0].finish_reason in ("stop", "length", "tool_calls"), answered
assert answered.usage.prompt_tokens > offered.usage.prompt_tokens, (answered.usage, offered.usage)
try:
    client.chat.completions.create(
        model="ossterm-demo", messages=history[:1] + history[2:], tools=weather)
    raise SystemExit("a tool result without its call was accepted")
except openai.BadRequestError as error:
    assert error.body["param"] == "messages[1].tool_call_id", error.body
print("tools: a call and its result round trip")

# A forced call: the demo model never calls on its own; tool_choice makes it, with valid JSON.
cities = ["Oslo", "Paris", "Rome"]
forecast = [{"type": "function", "function": {
    "name": "get_forecast", "description": "The forecast for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"enum": cities}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"], "additionalProperties": False}}}]
forced = client.chat.completions.create(
    model="ossterm-demo", messages=[{"role": "user", "content": "hello"}], tools=forecast,
    tool_choice={"type": "function", "function": {"name": "get_forecast"}}, temperature=0,
    max_tokens=400,
)
choice = forced.choices[0]
assert choice.finish_reason == "tool_calls", choice
call = choice.message.tool_calls[0].function
assert call.name == "get_forecast", call
arguments = json.loads(call.arguments)
assert arguments["city"] in cities and 1 <= arguments["days"] <= 7, arguments
assert set(arguments) == {"city", "days"}, arguments
print("forced tool_choice: a call with valid arguments")
