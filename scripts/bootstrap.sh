#!/usr/bin/env bash
# Set up everything vlrun needs on a fresh machine, then do one job:
#   scripts/bootstrap.sh run [vlrun args...]   talk to a profile (default: profiles/casual-chat.yaml)
#   scripts/bootstrap.sh serve [vlrun serve args...]  the browser console (default: profiles/)
#   scripts/bootstrap.sh test [pytest args...] install test tools, start virtual audio, run the tests
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-run}"; shift || true
VENV="${VLRUN_VENV:-.venv}"
PY="${PYTHON:-python3}"

have() { command -v "$1" >/dev/null 2>&1; }

# One line per step on screen; the installers' full output goes to a log, shown whole on failure.
LOG="${VLRUN_SETUP_LOG:-$VENV.setup.log}"
step() { echo "vlrun setup: $*"; }
quietly() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "vlrun setup: failed: $*" >&2
        echo "---- $LOG ----" >&2
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}

apt_install() {
    # System packages: only as root with apt, and only those missing.
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && have apt-get; then
        step "installing system packages: ${missing[*]}"
        quietly apt-get update -qq
        quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "note: missing system packages (${missing[*]}); install them with your package manager" >&2
        return 1
    fi
}

venv_install() {
    # pip runs only when the venv is new or pyproject.toml / the requested extras changed.
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating $VENV"
        quietly "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.vlrun-installed" want
    want="$(sha256sum pyproject.toml | cut -c1-16) $*"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c "import runner" >/dev/null 2>&1; then
        return 0
    fi
    step "installing vlrun and its dependencies (about a minute; log: $LOG)"
    quietly "$VENV/bin/python" -m pip install --upgrade pip
    quietly "$VENV/bin/python" -m pip install "$@"
    echo "$want" >"$stamp"
}

case "$job" in
run)
    # PortAudio makes the microphone usable; without it vlrun falls back to text mode.
    extras=""
    if apt_install portaudio19-dev; then extras="[audio]"; fi
    venv_install -e ".${extras}"
    [ $# -eq 0 ] && set -- profiles/casual-chat.yaml
    exec "$VENV/bin/vlrun" "$@"
    ;;
serve)
    # The browser does the audio: no PortAudio needed. Open the URL it prints.
    venv_install -e .
    [ $# -eq 0 ] && set -- profiles/
    exec "$VENV/bin/vlrun" serve "$@"
    ;;
test)
    apt_install portaudio19-dev pulseaudio libasound2-plugins espeak-ng sox tmux graphviz chromium haproxy
    venv_install -e ".[audio]" --group test
    # Virtual microphone and speaker (PulseAudio null sinks) for the real-PyAudio tests.
    step "starting virtual audio devices"
    bash scripts/pulse-env.sh start >>"$LOG" 2>&1 || echo "note: PulseAudio did not start; audio tests will be skipped" >&2
    trap 'bash scripts/pulse-env.sh stop || true' EXIT
    # Static checks first: lint, formatting, types and the wings' import contracts.
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    "$VENV/bin/lint-imports"
    "$VENV/bin/python" -m pytest -n 2 "$@"
    ;;
*)
    echo "usage: scripts/bootstrap.sh run|serve|test [args...]" >&2; exit 2 ;;
esac
