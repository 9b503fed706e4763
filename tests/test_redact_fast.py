"""The redaction fast paths: the literal hint before the shapes' RE2 pass, and the substring
check before the registry's. Each must skip only lines that RE2 would have left unchanged."""

from __future__ import annotations

import random
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import redact as R

# One line per alternative of R._SHAPE_PARTS, in order: each must be masked.
SAMPLES = [
    "Authorization: Basic dXNlcjpwYXNz",
    "sent bearer abcdefgh12345678 to the service",
    "token eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl here",
    '{"client_secret": "s3cr3t-value"}',
    "Ocp-Apim-Subscription-Key: 0123456789abcdef",
    "wss://host/path?x=1&sig=abcdef0123",
    "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "key " + "a" * 52 + "JQQJ99" + "AB" + "b" * 16 + "Z" + "c" * 7,
    "secret abc1Q~" + "x" * 32,
]


@pytest.fixture(autouse=True)
def _isolated_registry() -> Any:
    R.forget_secrets()
    yield
    R.forget_secrets()


def test_every_shape_has_a_sample_and_the_hint_finds_it() -> None:
    assert len(SAMPLES) == len(R._SHAPE_PARTS)  # a new shape needs its sample here
    for part, sample in zip(R._SHAPE_PARTS, SAMPLES, strict=True):
        assert re.search(part, sample), (part, sample)  # the sample is that alternative's
        assert R._SHAPE_HINT.search(sample.casefold()), sample
        assert R.MASK in R.redact(sample), sample


def _python_regex(part: str) -> str:
    return part.replace("(^|", "(?:^|")  # groups are fine; hypothesis reads Python syntax


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_text_any_shape_matches_always_carries_a_hint(data: st.DataObject) -> None:
    part = data.draw(st.sampled_from(R._SHAPE_PARTS))
    shape = data.draw(st.from_regex(re.compile(_python_regex(part)), fullmatch=True))
    before = data.draw(st.text(max_size=20))  # any characters: the long s, the Kelvin sign...
    after = data.draw(st.text(max_size=20))
    text = before + shape + after
    if R._shapes().search(text) is not None:
        assert R._SHAPE_HINT.search(text.casefold()) is not None, text


class _Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def search(self, *args: Any) -> Any:
        self.calls += 1
        return self.inner.search(*args)

    def sub(self, *args: Any) -> Any:
        return self.inner.sub(*args)


def test_case_folded_letters_still_hint() -> None:
    # RE2's case-insensitive match equates these with ASCII letters: so must the hint
    folded = ("pa\u017f\u017fword=hunter2-value", "to\u212aen=abcdef", "BEARER abcdefgh12345678")
    for text in folded:
        assert R._shapes().search(text), text
        assert R.MASK in R.redact(text), text


def test_a_plain_line_never_reaches_re2(monkeypatch: pytest.MonkeyPatch) -> None:
    R.register_secret("bench-twilio-token-0123456789")
    matcher = R._current_matcher()
    shapes = _Counting(R._shapes())
    prefixes = _Counting(matcher.pattern)
    monkeypatch.setattr(R, "_shapes", lambda: shapes)
    monkeypatch.setattr(matcher, "pattern", prefixes)
    line = "barge-in: truncated item_0123456789abcdef at 1234 ms of 5678 ms"
    assert R.redact(line) == line
    assert (shapes.calls, prefixes.calls) == (0, 0)
    # ... and a line that holds the secret still gets there and is masked
    assert R.redact("the value bench-twilio-token-0123456789 leaked") == "the value *** leaked"
    assert prefixes.calls >= 1


@pytest.mark.parametrize("count", [1, 3, 20])  # 20 secrets: past the substring fast path
def test_registry_fast_path_masks_what_re2_masks(count: int) -> None:
    rng = random.Random(count)
    secrets = ["".join(rng.choices(string.ascii_letters + "-_", k=24)) for _ in range(count)]
    for value in secrets:
        R.register_secret(value)
    matcher = R._current_matcher()
    assert (matcher.few is not None) == (len(matcher.by_prefix) <= R._FEW_PREFIXES)
    slow = R._Matcher([f for forms in R._values.values() for f in forms])
    slow.few = None  # RE2 only
    forms = [f.decode() for forms in R._values.values() for f in forms]
    for _ in range(200):
        pieces = [rng.choice(forms) if rng.random() < 0.3 else rng.choice(string.printable)]
        pieces += ["".join(rng.choices(string.printable, k=rng.randrange(0, 12)))]
        text = "".join(rng.sample(pieces, len(pieces)))
        assert matcher.sub(text) == slow.sub(text)
    assert all(R.MASK in R.redact(f"x {v} y") for v in secrets)
