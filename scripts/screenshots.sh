#!/usr/bin/env bash
# Makes screenshots/*.png from the real binary on the demo model: drives `ossterm --demo` in
# tmux at 160x48, captures the panes with colours (capture-pane -e), renders them with
# scripts/ansi_to_png.py (Pillow + DejaVu Sans Mono).
#   scripts/screenshots.sh            # all screenshots (needs assets/demo and the engine)
#   OSSTERM_ARGS="--model /x" scripts/screenshots.sh error   # just the error screen
#   scripts/screenshots.sh branching  # just the answer-versions screen
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
BIN="$PWD/target/debug/ossterm"
OUT="$PWD/screenshots"
WORK="$(mktemp -d)"
SOCK="ossterm-shots-$$"
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/data" "$WORK/config"
ONLY="${1:-all}"

tm() { tmux -L "$SOCK" "$@"; }
screen() { tm capture-pane -p -t s; }
wait_for() { # wait_for PATTERN [SECONDS]
  local deadline=$((SECONDS + ${2:-120}))
  until screen | grep -qE -- "$1"; do
    if ((SECONDS > deadline)); then echo "timed out waiting for '$1'" >&2; screen >&2; exit 1; fi
    sleep 0.2
  done
}
shot() { # shot NAME [COLUMNS]
  sleep 0.3 # one more frame
  tm capture-pane -e -p -t s >"$WORK/$1.txt"
  python3 scripts/ansi_to_png.py "$WORK/$1.txt" "$OUT/$1.png" --cols "${2:-160}"
  echo "screenshots/$1.png"
}

answers_shown() { screen | grep -cE "tok · [0-9.]+ tok/s" || true; }
# The second question edited and resent (the first version kept: "‹2/2›"), then selected.
branching_scene() {
  tm send-keys -t s C-p
  wait_for "r copy reasoning"
  tm send-keys -t s Up
  wait_for "e edit & resend"
  tm send-keys -t s e C-u
  tm send-keys -t s -l "Make a small table."
  tm send-keys -t s Enter
  wait_for "You ‹2/2›"
  until [ "$(answers_shown)" -ge 2 ]; do sleep 0.2; done
  tm send-keys -t s C-p Up
  wait_for "e edit & resend"
  shot branching
  tm send-keys -t s Escape
  sleep 0.3
}

tm -f /dev/null new-session -d -s s -x 160 -y 48 \
  -e "OSSTERM_DATA_DIR=$WORK/data" -e "OSSTERM_CONFIG_DIR=$WORK/config" -e TERM=xterm-256color \
  bash --norc --noprofile
tm set -g default-terminal "tmux-256color"
tm send-keys -t s "clear; $BIN ${OSSTERM_ARGS:---demo}" Enter

if [ "$ONLY" = error ]; then
  wait_for "to quit"
  shot error
  tm send-keys -t s q
  exit 0
fi

wait_for "is ready on"
# A first exchange, so the chat and the reasoning pane have history.
tm send-keys -t s -l "hello"
tm send-keys -t s Enter
wait_for "tok · [0-9.]+ tok/s"
tm send-keys -t s -l "Write a Rust function to reverse a string."
tm send-keys -t s Enter
if [ "$ONLY" = branching ]; then
  until [ "$(answers_shown)" -ge 2 ]; do sleep 0.2; done
  branching_scene
  tm send-keys -t s C-q
  exit 0
fi
# Mid-answer, best effort: the demo model is fast, so poll hard and capture at once.
deadline=$((SECONDS + 5))
until screen | grep -q "● generating" || ((SECONDS > deadline)); do sleep 0.01; done
if screen | grep -q "● generating"; then
  tm capture-pane -e -p -t s >"$WORK/main-mid-answer.txt"
  python3 scripts/ansi_to_png.py "$WORK/main-mid-answer.txt" "$OUT/main-mid-answer.png" --cols 160
  echo "screenshots/main-mid-answer.png"
else
  echo "the answer finished before a mid-answer frame could be captured" >&2
fi
until [ "$(screen | grep -cE "tok · [0-9.]+ tok/s")" -ge 2 ]; do sleep 0.2; done
shot main-answered
tm send-keys -t s C-r
shot reasoning-hidden
tm send-keys -t s C-r Tab Tab
shot reasoning-focused
tm send-keys -t s F1
shot help
tm send-keys -t s Escape; sleep 0.3
branching_scene
# A second chat, so the list and its search have something to pick from.
tm send-keys -t s C-n
tm send-keys -t s -l "How long should a risotto cook?"
tm send-keys -t s Enter
wait_for "tok · [0-9.]+ tok/s"
tm send-keys -t s C-l
wait_for "Chats \\(2\\)"
shot chats
# Search: typing filters titles and messages; a match in a message shows a snippet.
tm send-keys -t s -l "small table"
wait_for "Chats \\(1 of 2\\)"
shot chat-search
# Esc clears the search, then closes the list.
for _ in 1 2 3; do
  screen | grep -q "Chats (" || break
  tm send-keys -t s Escape
  sleep 0.3
done
# 80x24: the reasoning pane hides first, the metrics pane's rows all fit.
tm resize-window -t s -x 80 -y 24
sleep 0.5
shot narrow-80x24 80
tm resize-window -t s -x 160 -y 48
sleep 0.3
tm send-keys -t s C-q

# A tool call: a second run with the python tool switched on (a config of its own).
sleep 1 # the app has quit and restored the terminal
printf '[python]\nenabled = true\ntimeout_s = 30\n' >"$WORK/config/config.toml"
tm send-keys -t s "clear; $BIN ${OSSTERM_ARGS:---demo}" Enter
wait_for "is ready on|opened '"
tm send-keys -t s C-n
tm send-keys -t s -l "What is 6 x 7?"
tm send-keys -t s Enter
wait_for "Run this tool call\\?"
shot tool-approval
sleep 0.8 # answer keys count once the prompt has been up a moment
tm send-keys -t s y
wait_for "1 call" 60
until [ "$(screen | grep -cE "tok · [0-9.]+ tok/s")" -ge 1 ]; do sleep 0.2; done
shot tool-answered
tm send-keys -t s C-q
