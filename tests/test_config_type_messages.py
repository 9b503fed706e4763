"""`vlrun check`'s type errors name what was found once: a null is "got null", not "got null
null" (the type's name and the value's were both printed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.load import load_profile
from runner.errors import ProfileError


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("gpt_live: null", "expected a mapping, got null (at $.gpt_live)"),
        ("gpt_live: [1, 2]", "expected a mapping, got a list [1, 2] (at $.gpt_live)"),
    ],
)
def test_a_wrong_type_is_named_once(tmp_path: Path, line: str, said: str) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: g\nconnection: {{model: gpt-live-1}}\ninstructions: hi\n{line}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(profile)
    assert said in caught.value.render()
