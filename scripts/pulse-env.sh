#!/usr/bin/env bash
# Give PortAudio a real microphone and speaker on a headless machine (tests, CI, benchmarks).
#
#   scripts/pulse-env.sh start    start a PulseAudio daemon with null sinks: "vspk" is the
#                                 speaker (record it from vspk.monitor), "vmic" feeds the
#                                 microphone source "mic" (play into it with paplay --device=vmic)
#   scripts/pulse-env.sh stop     stop the daemon this script started (never another one)
#   scripts/pulse-env.sh status   exit 0 when this script's daemon runs with both sinks
#
# The daemon lives in the runtime folder of PULSE_RUNTIME_PATH (PulseAudio's default folder when
# it is unset). pulse-env only ever configures or stops a daemon it started itself (it leaves a
# marker with the daemon's pid in that folder): when someone else's PulseAudio already runs
# there (a desktop session, another program), "start" changes nothing and says how to get a
# private one: PULSE_RUNTIME_PATH=$(mktemp -d), the same variable for the programs that use it
# (the tests do this, so nothing of the user's sound server is touched).
# Idempotent: running "start" twice leaves one daemon and one copy of each sink.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1 || { echo "pulse-env: $1 not found (apt-get install pulseaudio)" >&2; exit 3; }; }

# This script talks to the daemon of the runtime folder, never to a PULSE_SERVER elsewhere, and
# its pactl calls never autospawn a daemon of the default configuration.
unset PULSE_SERVER
CLIENT_CONF="$(mktemp)"
trap 'rm -f "$CLIENT_CONF"' EXIT
echo "autospawn = no" >"$CLIENT_CONF"
export PULSE_CLIENTCONFIG="$CLIENT_CONF"
MARKER_NAME="vlrun-pulse-env.pid"

has_sink() { pactl list short sinks 2>/dev/null | awk '{print $2}' | grep -qx "$1"; }
has_source() { pactl list short sources 2>/dev/null | awk '{print $2}' | grep -qx "$1"; }

# The running daemon's runtime folder (where its socket and pid file are), from the server itself.
runtime_dir() {
    local server
    server="$(pactl info 2>/dev/null | sed -n 's/^Server String: //p')" || return 1
    server="${server#unix:}"
    [ -n "$server" ] || return 1
    dirname "$server"
}

# Exit 0 when the daemon in runtime folder $1 is the one this script started: the marker names
# the pid in PulseAudio's own pid file, and that process is a pulseaudio.
ours() {
    local dir="$1" mine pid
    [ -f "$dir/$MARKER_NAME" ] && [ -f "$dir/pid" ] || return 1
    mine="$(tr -dc 0-9 <"$dir/$MARKER_NAME")"
    pid="$(tr -dc 0-9 <"$dir/pid")"
    [ -n "$mine" ] && [ "$mine" = "$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "pulseaudio" ]
}

foreign() {
    echo "pulse-env: a PulseAudio that pulse-env did not start already runs (${1:-its runtime folder is unknown});" >&2
    echo "    it is left as it is. For private virtual devices, point PULSE_RUNTIME_PATH at an empty" >&2
    echo "    folder, e.g. export PULSE_RUNTIME_PATH=\$(mktemp -d), then run this again" >&2
    exit 3
}

start() {
    need pulseaudio
    need pactl
    local dir
    if pulseaudio --check 2>/dev/null; then
        dir="$(runtime_dir)" || foreign ""
        ours "$dir" || foreign "$dir"
    else
        # A minimal daemon (-n: no default.pa): no hardware detection, and no restore modules
        # that would write its default devices into the user's ~/.config/pulse. Running as root
        # is fine for a per-user daemon (it only warns); it never exits while tests run.
        pulseaudio -D -n --load=module-native-protocol-unix --exit-idle-time=-1 \
            --disallow-exit --log-target=syslog >/dev/null 2>&1 || true
        # -D returns once the daemon is ready; still wait for its socket (bounded: 50 x 0.1 s).
        for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
        pactl info >/dev/null 2>&1 || { echo "pulse-env: PulseAudio did not start" >&2; exit 3; }
        dir="$(runtime_dir)"
        tr -dc 0-9 <"$dir/pid" >"$dir/$MARKER_NAME"
    fi
    has_sink vspk || pactl load-module module-null-sink sink_name=vspk >/dev/null
    has_sink vmic || pactl load-module module-null-sink sink_name=vmic >/dev/null
    has_source mic || pactl load-module module-remap-source master=vmic.monitor source_name=mic >/dev/null
    # Defaults only on our own daemon (PortAudio's "default" device is the server's default).
    pactl set-default-sink vspk
    pactl set-default-source mic
    echo "pulse-env: ready in $dir (speaker vspk, microphone mic fed by vmic)"
}

stop() {
    local dir pid
    if ! pulseaudio --check 2>/dev/null; then
        echo "pulse-env: no PulseAudio runs here"
        return 0
    fi
    dir="$(runtime_dir)" || { echo "pulse-env: a PulseAudio pulse-env did not start runs; left running"; return 0; }
    if ! ours "$dir"; then
        echo "pulse-env: the PulseAudio in $dir was not started by pulse-env; left running"
        return 0
    fi
    pid="$(tr -dc 0-9 <"$dir/$MARKER_NAME")"
    kill -TERM "$pid" 2>/dev/null || true
    # Bounded wait for it to go (50 x 0.1 s), then the marker goes with it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "pulse-env: PulseAudio ($pid) did not stop within 5 s" >&2
        exit 3
    fi
    rm -f "$dir/$MARKER_NAME"
    echo "pulse-env: stopped"
}

status() {
    local dir
    pulseaudio --check 2>/dev/null && dir="$(runtime_dir)" && ours "$dir" \
        && has_sink vspk && has_sink vmic && has_source mic
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
