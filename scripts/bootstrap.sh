#!/usr/bin/env bash
# Set up everything vlrun needs on a fresh machine, then do one job:
#   scripts/bootstrap.sh run [vlrun args...]   talk to a profile (default: profiles/casual-chat.yaml)
#   scripts/bootstrap.sh serve [vlrun serve args...]  the browser console (default: profiles/)
#   scripts/bootstrap.sh test [pytest args...] install test tools, then the static checks and tests
# Idempotent: a second run only checks what is already there.
# Sourcing it (tests do) defines the functions without running a job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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

# What the venv holds, as words: "extra:audio", "extra:serve", "group:test". The stamp records
# pyproject.toml's hash and the words installed; a job whose words are all there (a subset, so
# switching between run, serve and test does not re-run pip) skips pip. When pip must run it
# installs the union of the old and new words, so the next switch back is free too.
stamp_covers() {  # stamp_covers STAMP_LINE HASH WORD...: exit 0 when the stamp has HASH and every WORD
    local line="$1" hash="$2"; shift 2
    local have=" ${line#* } "
    [ "${line%% *}" = "$hash" ] || return 1
    for word in "$@"; do [[ "$have" == *" $word "* ]] || return 1; done
}

stamp_union() {  # stamp_union STAMP_LINE HASH WORD...: the sorted words to install
    local line="$1" hash="$2"; shift 2
    local words=("$@")
    # Words of a stamp for another pyproject.toml still say what the user installed before.
    if [ -n "$line" ]; then
        for word in ${line#* }; do
            case "$word" in extra:* | group:*) words+=("$word") ;; esac
        done
    fi
    printf '%s\n' "${words[@]}" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

pip_args() {  # pip_args WORD...: pip install's arguments for those words
    local extras=() groups=()
    for word in "$@"; do
        case "$word" in
        extra:*) extras+=("${word#extra:}") ;;
        group:*) groups+=(--group "${word#group:}") ;;
        esac
    done
    local spec="."
    if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
    echo "-e $spec ${groups[*]}" | sed 's/ $//'
}

venv_install() {  # venv_install WORD...
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating $VENV"
        quietly "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.vlrun-installed" line="" hash words
    hash="$(sha256sum pyproject.toml | cut -c1-16)"
    [ -f "$stamp" ] && line="$(head -n1 "$stamp")"
    if stamp_covers "$line" "$hash" "$@" \
        && "$VENV/bin/python" -c "import runner" >/dev/null 2>&1; then
        return 0
    fi
    words="$(stamp_union "$line" "$hash" "$@")"
    step "installing vlrun and its dependencies (about a minute; log: $LOG)"
    quietly "$VENV/bin/python" -m pip install --upgrade pip
    # shellcheck disable=SC2046  # pip_args prints separate arguments without spaces inside
    quietly "$VENV/bin/python" -m pip install $(pip_args $words)
    echo "$hash $words" >"$stamp"
}

main() {
    job="${1:-run}"; shift || true
    case "$job" in
    run)
        # PortAudio makes the microphone usable; without it vlrun falls back to text mode.
        extras=()
        if apt_install portaudio19-dev; then extras=(extra:audio); fi
        venv_install "${extras[@]}"
        [ $# -eq 0 ] && set -- profiles/casual-chat.yaml
        exec "$VENV/bin/vlrun" "$@"
        ;;
    serve)
        # The browser does the audio: no PortAudio needed. Open the URL it prints. The serve extra
        # brings the phone edges and /metrics (--serve-file needs prometheus-client).
        venv_install extra:serve
        [ $# -eq 0 ] && set -- profiles/
        exec "$VENV/bin/vlrun" serve "$@"
        ;;
    test)
        apt_install portaudio19-dev pulseaudio libasound2-plugins espeak-ng sox tmux graphviz chromium haproxy
        venv_install extra:audio extra:serve group:test
        # The audio tests start their own private PulseAudio (tests/conftest.py's pulse_audio, its
        # own PULSE_RUNTIME_PATH): the user's sound server is never changed, defaulted or stopped.
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
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
