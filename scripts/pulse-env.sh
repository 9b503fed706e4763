#!/usr/bin/env bash
# Give PortAudio a real microphone and speaker on a headless machine (tests, CI, benchmarks).
#
#   scripts/pulse-env.sh start    start PulseAudio (if needed) with null sinks: "vspk" is the
#                                 speaker (record it from vspk.monitor), "vmic" feeds the
#                                 microphone source "mic" (play into it with paplay --device=vmic)
#   scripts/pulse-env.sh stop     stop the daemon this script started
#   scripts/pulse-env.sh status   exit 0 when the daemon runs and both sinks exist
#
# Idempotent: running "start" twice leaves one daemon and one copy of each sink.
# With PULSE_RUNTIME_PATH set to a private folder, the daemon is private to the processes that
# share that variable (the tests do this, so other users of the machine cannot talk over them).
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1 || { echo "pulse-env: $1 not found (apt-get install pulseaudio)" >&2; exit 3; }; }

has_sink() { pactl list short sinks 2>/dev/null | awk '{print $2}' | grep -qx "$1"; }
has_source() { pactl list short sources 2>/dev/null | awk '{print $2}' | grep -qx "$1"; }

start() {
    need pulseaudio
    need pactl
    if ! pulseaudio --check 2>/dev/null; then
        # Running as root is fine for a per-user daemon (it only warns); never exit while tests run.
        pulseaudio -D --exit-idle-time=-1 --disallow-exit --log-target=syslog >/dev/null 2>&1 || true
        # The daemon forks; wait until it answers (bounded: 50 x 0.1 s).
        for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
        pactl info >/dev/null 2>&1 || { echo "pulse-env: PulseAudio did not start" >&2; exit 3; }
    fi
    has_sink vspk || pactl load-module module-null-sink sink_name=vspk >/dev/null
    has_sink vmic || pactl load-module module-null-sink sink_name=vmic >/dev/null
    has_source mic || pactl load-module module-remap-source master=vmic.monitor source_name=mic >/dev/null
    pactl set-default-sink vspk
    pactl set-default-source mic
    echo "pulse-env: ready (speaker vspk, microphone mic fed by vmic)"
}

stop() {
    if pulseaudio --check 2>/dev/null; then
        pulseaudio --kill 2>/dev/null || true
    fi
    echo "pulse-env: stopped"
}

status() {
    pulseaudio --check 2>/dev/null && has_sink vspk && has_sink vmic && has_source mic
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
