"""Secrets are masked by shape and by a bounded registry whose matching cost never grows with
uptime: a worker registering an hourly Entra token for two weeks (336 tokens) used to recompile
one ever-growing regex on its event loop for each (about 3 s per token by then)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest

from runner import redact as r
from runner.redact import MASK, forget_secrets, redact


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def entra_token() -> str:
    """A token shaped like Entra's: base64url JSON header and claims, a 256-byte signature."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": secrets.token_hex(8)}).encode())
    claims = {"aud": "https://cognitiveservices.azure.com", "oid": secrets.token_hex(16)}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(secrets.token_bytes(256))}"


def test_two_weeks_of_hourly_entra_tokens_leave_the_registry_empty_and_every_token_masked() -> None:
    tokens = [entra_token() for _ in range(336)]
    for token in tokens:
        r.register_secret(token)
    assert r.registry_size() == (0, 0)  # the shape masks them: nothing to remember
    for token in (tokens[0], tokens[-1]):
        for text in (f"token {token} end", f"?access_token={token}&x=1", json.dumps({"t": token})):
            out = redact(text)
            assert token not in out and token[:40] not in out and MASK in out


def test_the_registry_holds_at_most_its_bound_and_its_pattern_stops_growing() -> None:
    opaque = [secrets.token_urlsafe(1500) for _ in range(336)]  # not JWTs: they are registered
    sizes = []
    for n, token in enumerate(opaque, 1):
        r.register_secret(token)
        if n in (r.MAX_SECRETS, 336):
            sizes.append(r.registry_size())
    values, prefixes = sizes[-1]
    assert values == r.MAX_SECRETS
    assert sizes[0] == sizes[1]  # the 336th registration builds what the 256th did
    assert prefixes <= r.MAX_SECRETS * 7  # at most seven forms of each value
    matcher = r._current_matcher()
    assert matcher.pattern is not None
    assert len(matcher.pattern.pattern) <= r.MAX_SECRETS * 7 * 2 * r._PREFIX  # escaped prefixes
    # the newest values are masked in every form; the least recently registered was dropped
    newest = opaque[-1]
    for form in (newest, base64.b64encode(newest.encode()).decode()):
        assert form not in redact(f"x {form} y")
    assert opaque[0] in redact(f"x {opaque[0]} y")


def test_registering_a_known_value_again_builds_nothing_and_keeps_it_newest() -> None:
    keys = [f"key-{n:04d}-{secrets.token_hex(12)}" for n in range(r.MAX_SECRETS)]
    for key in keys:
        r.register_secret(key)
    redact("build once")
    builds = r.registry_builds()
    r.register_secret(keys[0])  # the startup API key, registered again by a profile load
    redact("nothing changed")
    assert r.registry_builds() == builds
    r.register_secret("one-more-secret-value")  # drops keys[1], the least recently registered
    assert keys[0] not in redact(keys[0]) and keys[1] in redact(keys[1])


def test_overlapping_and_adjacent_secrets_are_masked_longest_first() -> None:
    r.register_secret("abcdefgh")
    r.register_secret("abcdefghijkl")
    assert redact("<abcdefghijkl|abcdefghabcdefgh|xabcdefg>") == f"<{MASK}|{MASK}{MASK}|xabcdefg>"
    assert redact("ünïcode abcdefgh ✓") == f"ünïcode {MASK} ✓"


CASK_KEY = "A" * 52 + "JQQJ99" + "B" + "C" + "D" * 16 + "E" + "F" * 7  # 84 characters


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdef0123456789", "abcdef0123456789"),
        ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("wss://h/realtime?api-key=0123456789abcdef0123456789abcdef", "0123456789abcdef"),
        ("Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef", "0123456789abcdef"),
        ("wss://h/media?token=tok_9f8e7d6c5b4a&call=1", "tok_9f8e7d6c5b4a"),
        ("https://a.blob.core.windows.net/c?sv=2024&sig=Zm9vYmFy%2Bc2lnbmF0dXJl&se=1", "Zm9vYmFy"),
        ("webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8"),
        (f"key {CASK_KEY} in a log", CASK_KEY),
        ("client secret Abc8Q~0123456789abcdefghij_klmnopqrstu.vw", "0123456789abcdefghij"),
        ('{"api-key": "k-0123456789", "x": 1}', "k-0123456789"),
        ("AccountName=a;AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5;EndpointSuffix=x", "c2VjcmV0a2V5"),
    ],
)
def test_credential_shapes_are_masked_without_registration(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and MASK in out, out


@pytest.mark.parametrize(
    "text",
    [
        "call CA0123456789abcdef0123456789abcdef answered (twilio)",
        "session 2f1c4e9a-1b2c-4d5e-8f90-123456789abc connected",
        "the caller asked about their token balance and the api key docs",
        "close code=1006 after 3 reconnect(s)",
    ],
)
def test_ordinary_log_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_hostile_run_of_near_shapes_is_masked_in_one_linear_pass() -> None:
    # RE2 cannot backtrack: 30,000 header-like starts with no dot are one pass, where a
    # backtracking engine on `eyJ[...]{4,}\.` would scan to the end from every start (10^10
    # steps: the test's timeout would end it).
    run = "eyJabcd" * 30_000
    out = redact(f"{run} eyJhbGci.eyJzdWIi.c2lnbmF0dXJl")
    assert out == f"{run} {MASK}"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+14155551234", "+*******1234"),
        ("14155551234", "*******1234"),
        ("+44 20 7946 0958", "+** ** **** 0958"),
        ("+33 1 23 45 67 89", "+** * ** ** 67 89"),
        ("1234", "1234"),
        ("anonymous", "anonymous"),
    ],
)
def test_a_phone_number_keeps_its_last_four_digits(value: str, masked: str) -> None:
    assert r.mask_phone(value) == masked
    assert r.mask_phone(value, reveal=True) == value


def test_phone_numbers_in_free_text_are_masked_and_dates_and_ids_are_not() -> None:
    text = (
        "call from +14155551234 to sip:+442079460958@x, +33 1 23 45 67 89; "
        "2026-12-07 10:00:05 CA12345678901a"
    )
    out = r.mask_phone_numbers(text)
    assert "4155551234" not in out and "+*******1234" in out and "+********0958@x" in out
    assert "+** * ** ** 67 89" in out
    assert "2026-12-07 10:00:05 CA12345678901a" in out
