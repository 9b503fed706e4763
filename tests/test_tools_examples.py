"""The example tools in tools/, called the way the model calls them (no network: a local server
stands in for Open-Meteo)."""

from __future__ import annotations

import datetime as dt
import json
import operator
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.testing import ToolHarness
from tests.helpers import EXAMPLE_TOOLS

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ToolHarness.from_path(ROOT / "tools")


def test_examples_load_and_describe_themselves() -> None:
    assert TOOLS.registry.names() == EXAMPLE_TOOLS
    for spec in TOOLS.registry:
        assert spec.description and "tools/" in spec.source
        for name, prop in spec.parameters["properties"].items():
            assert prop.get("description"), f"{spec.name}.{name} has no description for the model"


# ---------------------------------------------------------------- current_time


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC"])
def test_current_time_matches_the_zone(zone: str) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    out = TOOLS.call(name="current_time", timezone=f" {zone} ")
    after = dt.datetime.now(dt.timezone.utc)
    stamp = dt.datetime.fromisoformat(out["iso"])
    assert out["timezone"] == zone
    assert before.replace(microsecond=0) <= stamp <= after
    assert stamp.utcoffset() == dt.datetime.now(ZoneInfo(zone)).utcoffset()
    assert out["time"] == stamp.strftime("%H:%M")
    offset = stamp.utcoffset()
    assert offset is not None
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    assert out["utc_offset"] == f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def test_current_time_suggests_the_full_zone_name() -> None:
    result = TOOLS.result(name="current_time", timezone="Tokyo")
    assert result.error_type == "tool_error"
    assert "unknown timezone 'Tokyo'" in result.error and "'Asia/Tokyo'" in result.error


def test_current_time_unknown_zone_without_a_match() -> None:
    result = TOOLS.result(name="current_time", timezone="Mars/Olympus_Mons")
    assert "use an IANA name" in (result.error or "")


def test_current_time_rejects_path_tricks() -> None:
    result = TOOLS.result(name="current_time", timezone="../../etc/passwd")
    assert result.error_type == "tool_error"


# ---------------------------------------------------------------- calculate


def calc(expression: str) -> Any:
    return TOOLS.call(name="calculate", expression=expression)["result"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(17.5 * 3) / 4", (17.5 * 3) / 4),
        ("2 ** 10", 1024),
        ("2^10", 1024),
        ("-3 + +4", 1),
        ("7 // 2 + 7 % 2", 4),
        ("sqrt(16) + abs(-2)", 6),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("10 / 4", 2.5),
        ("6 × 7 ÷ 2", 21),
    ],
)
def test_calculate(expression: str, expected: float) -> None:
    assert calc(expression) == pytest.approx(expected)


OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(10**6), 10**6), min_size=2, max_size=5),
    st.lists(st.sampled_from(sorted(OPS)), min_size=4, max_size=4),
)
def test_calculate_agrees_with_python_left_to_right(numbers: list[int], ops: list[str]) -> None:
    # Fully parenthesised left to right, so the oracle needs no precedence rules.
    expression, expected = f"({numbers[0]})", numbers[0]
    for number, op in zip(numbers[1:], ops, strict=False):
        expression = f"({expression} {op} ({number}))"
        expected = OPS[op](expected, number)
    assert calc(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('touch /tmp/vlrun-pwned')", "not allowed"),
        ("open('/etc/passwd').read()", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("x + 1", "not allowed"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("'a' * 3", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("(10 ** 4000) ** 10000", "too large"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "sqrt()"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1" + "+1" * 300, "longer than"),
    ],
)
def test_calculate_refuses_anything_but_arithmetic(expression: str, message: str) -> None:
    result = TOOLS.result(name="calculate", expression=expression)
    assert result.error_type == "tool_error"
    assert message in (result.error or "")
    assert not Path("/tmp/vlrun-pwned").exists()


# ---------------------------------------------------------------- get_weather

GEOCODING = {
    "results": [
        {
            "name": "Paris",
            "latitude": 33.66,
            "longitude": -95.55,
            "country": "United States",
            "admin1": "Texas",
            "country_code": "US",
        },
        {
            "name": "Paris",
            "latitude": 48.85,
            "longitude": 2.35,
            "country": "France",
            "admin1": "Île-de-France",
            "country_code": "FR",
        },
    ]
}


class FakeOpenMeteo:
    """Just enough of Open-Meteo's geocoding and forecast APIs, on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.forecast_status = 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/search", self.search)
        app.router.add_get("/v1/forecast", self.forecast)
        return app

    async def search(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        if request.query["name"].lower() == "paris":
            return web.json_response(GEOCODING)
        return web.json_response({"generationtime_ms": 0.2})  # what Open-Meteo sends for no match

    async def forecast(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        if self.forecast_status != 200:
            return web.Response(status=self.forecast_status, text="busy")
        fahrenheit = request.query.get("temperature_unit") == "fahrenheit"
        return web.json_response(
            {
                "current_units": {"temperature_2m": "°F" if fahrenheit else "°C"},
                "current": {
                    "time": "2026-11-22T10:00",
                    "temperature_2m": 50.0 if fahrenheit else 10.0,
                    "apparent_temperature": 47.3 if fahrenheit else 8.5,
                    "relative_humidity_2m": 81,
                    "weather_code": 3,
                    "wind_speed_10m": 12.4,
                },
            }
        )


@pytest.fixture
async def open_meteo(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("VLRUN_WEATHER_API_URL", f"http://127.0.0.1:{port}")
    yield fake
    await runner.cleanup()


async def test_weather_picks_the_place_named_with_its_country(open_meteo: FakeOpenMeteo) -> None:
    harness = ToolHarness.from_path(ROOT / "tools" / "get_weather.py")
    out = await harness.acall(location="Paris, France", unit="fahrenheit")
    assert out["location"] == "Paris, Île-de-France, France"
    assert (out["temperature"], out["unit"], out["conditions"]) == (50.0, "°F", "overcast")
    assert out["humidity_percent"] == 81 and out["wind_kmh"] == 12.4
    (_, search), (_, forecast) = open_meteo.requests
    assert search["name"] == "Paris"
    assert (forecast["latitude"], forecast["longitude"]) == ("48.85", "2.35")
    assert forecast["temperature_unit"] == "fahrenheit"
    assert harness.said == ["Let me check the weather in Paris."]


async def test_weather_defaults_to_celsius_and_the_first_match(open_meteo: FakeOpenMeteo) -> None:
    out = await TOOLS.acall(name="get_weather", location="Paris")
    assert (out["temperature"], out["unit"]) == (10.0, "°C")
    assert out["location"].endswith("United States")
    assert open_meteo.requests[1][1]["temperature_unit"] == "celsius"


async def test_weather_unknown_place(open_meteo: FakeOpenMeteo) -> None:
    result = await TOOLS.aresult(name="get_weather", location="Atlantis")
    assert result.error_type == "tool_error"
    assert "no place called 'Atlantis'" in (result.error or "")
    assert len(open_meteo.requests) == 1


async def test_weather_service_error(open_meteo: FakeOpenMeteo) -> None:
    open_meteo.forecast_status = 503
    result = await TOOLS.aresult(name="get_weather", location="Paris")
    assert "answered HTTP 503" in (result.error or "")


async def test_weather_unit_is_validated_before_any_request(open_meteo: FakeOpenMeteo) -> None:
    result = await TOOLS.aresult(name="get_weather", location="Paris", unit="kelvin")
    assert result.error_type == "invalid_arguments"
    assert "'kelvin' is not one of ['celsius', 'fahrenheit']" in (result.error or "")
    assert open_meteo.requests == []


async def test_weather_service_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("VLRUN_WEATHER_API_URL", f"http://127.0.0.1:{port}")
    result = await TOOLS.aresult(name="get_weather", location="Paris")
    assert "could not be reached" in (result.error or "")
    assert json.loads(result.output)["error"]["type"] == "tool_error"


def test_each_example_has_a_profile_that_binds_it_without_drift() -> None:
    from runner.config.load import load_profile
    from runner.errors import VlrunError
    from runner.plugins import Registry, schema_drift, tool_dirs

    bound: dict[str, str] = {}
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        try:
            profile = load_profile(path)
        except VlrunError:  # base files and agent profiles need settings this test lacks
            continue
        registry = Registry.discover(list(tool_dirs(path, ())), entry_points=False)
        if profile.flow is not None:  # a flow node's tools are plugins by name
            for name in profile.flow.tool_names() & set(registry.names()):
                bound.setdefault(name, path.name)
        for binding in profile.tools:
            if binding.name in registry:
                bound.setdefault(binding.name, path.name)
                if binding.parameters is not None:
                    actual = registry.get(binding.name).parameters
                    assert schema_drift(binding.parameters, actual) == [], path.name
    assert set(TOOLS.registry.names()) <= set(bound), bound


# ---------------------------------------------------------------- flow tools (context.values)

BOOKING = {"guest": "Ann", "date": "2026-12-24", "time": "19:30", "party_size": 4}


def test_book_table_books_what_the_flow_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLRUN_BOOKINGS", str(tmp_path / "bookings.jsonl"))
    out = ToolHarness.from_path(ROOT / "tools", values=BOOKING).call(name="book_table")
    again = ToolHarness.from_path(ROOT / "tools", values=BOOKING).call(name="book_table")
    other = ToolHarness.from_path(ROOT / "tools", values={**BOOKING, "party_size": 5}).call(
        name="book_table"
    )
    assert out == again and out["reference"].startswith("R-") and len(out["reference"]) == 8
    assert other["reference"] != out["reference"]
    lines = [json.loads(x) for x in (tmp_path / "bookings.jsonl").read_text().splitlines()]
    assert lines[0] == {"reference": out["reference"], **BOOKING} and len(lines) == 3


def test_book_table_refuses_before_the_values_are_collected() -> None:
    result = ToolHarness.from_path(ROOT / "tools", values={"guest": "Ann"}).result(
        name="book_table"
    )
    assert not result.ok and "date, time, party_size not collected" in (result.error or "")


@pytest.mark.parametrize(
    ("employee", "pin", "verified"),
    [
        ("E1234", "2468", True),
        ("e1234 ", "2468", True),
        ("E1234", "2469", False),
        ("E9", "", False),
    ],
)
def test_verify_identity_checks_the_collected_pin(employee: str, pin: str, verified: bool) -> None:
    harness = ToolHarness.from_path(ROOT / "tools", values={"employee_id": employee, "pin": pin})
    out = harness.call(name="verify_identity")
    assert out["verified"] is verified
    assert pin not in json.dumps(out) or not pin


def test_open_ticket_numbers_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLRUN_TICKETS", str(tmp_path / "t.jsonl"))
    values = {"employee_id": "E1234", "category": "hardware", "summary": "no power"}
    out = ToolHarness.from_path(ROOT / "tools", values=values).call(name="open_ticket")
    assert out["ticket"].startswith("IT-") and out["category"] == "hardware"
    (line,) = (tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(line) == {"ticket": out["ticket"], **values}
