"""Voice names the service knows by name: one list for `vlrun check` and the emulator."""

from __future__ import annotations

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
#: names a voice of type "azure-realtime-native" may have
NATIVE_VOICES = (
    "aarti",
    "andrew",
    "ava",
    "denise",
    "diya",
    "elsa",
    "florian",
    "francisca",
    "meera",
    "xiaoxiao",
    "yunxi",
    "ximena",
)
