"""Faults the emulator injects on demand, for reliability tests of clients."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    """What should go wrong, and on which connections.

    A *drop* ends the connection: with ``close_code`` set the emulator sends a WebSocket close
    frame with that code, otherwise it cuts the TCP connection (the client sees 1006).
    """

    drop_after_events: int | None = None  # drop once this many server events were sent
    drop_at_s: float | None = None  # drop this many seconds after the upgrade
    close_code: int | None = None  # close code for a drop; None = abrupt TCP drop
    delay_ms: float = 0.0  # hold every server event (or only ``delay_types``) this long
    delay_types: tuple[str, ...] = ()
    error_after_events: int | None = None  # inject one error event after this many server events
    error_on_client_event: str | None = None  # inject an error in reply to this client event type
    error_code: str = "server_error"
    error_message: str = "[emulator] injected fault"
    refuse_auth: bool = False  # answer the handshake with HTTP 401, whatever the key
    connections: tuple[int, ...] | None = None  # 1-based connection numbers affected; None = all

    def applies_to(self, number: int) -> bool:
        return self.connections is None or number in self.connections

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        """``key=value`` strings from the command line, e.g. ``drop_after_events=20``."""
        values: dict[str, object] = {}
        fields = cls.__dataclass_fields__
        for spec in specs:
            key, sep, raw = spec.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise ValueError(f"unknown fault {spec!r}; known: {', '.join(fields)}")
            kind = str(fields[key].type)
            if "tuple" in kind:
                parts = [p for p in raw.split(",") if p]
                values[key] = tuple(int(p) for p in parts) if key == "connections" else tuple(parts)
            elif "bool" in kind:
                values[key] = raw.lower() in ("1", "true", "yes", "on")
            elif "float" in kind:
                values[key] = float(raw)
            elif "int" in kind:
                values[key] = int(raw)
            else:
                values[key] = raw
        return cls(**values)  # type: ignore[arg-type]
