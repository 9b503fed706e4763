"""Example tool: current weather from Open-Meteo (free, no API key), an async tool over HTTP.

Two calls: the geocoding API turns the place name into coordinates, the forecast API gives
the current conditions. ``VLRUN_WEATHER_API_URL`` points both at another server that serves
``/v1/search`` and ``/v1/forecast`` (the tests use a local one; nothing leaves the machine).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, Literal

from runner.plugins import ToolContext, tool

if TYPE_CHECKING:  # aiohttp is imported when the tool runs, so `vlrun check` stays light
    import aiohttp

GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1/search"
FORECAST_URL = "https://api.open-meteo.com/v1/forecast"

# WMO weather interpretation codes, as Open-Meteo documents them.
_CONDITIONS = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "freezing fog",
    51: "light drizzle",
    53: "drizzle",
    55: "heavy drizzle",
    56: "freezing drizzle",
    57: "heavy freezing drizzle",
    61: "light rain",
    63: "rain",
    65: "heavy rain",
    66: "freezing rain",
    67: "heavy freezing rain",
    71: "light snow",
    73: "snow",
    75: "heavy snow",
    77: "snow grains",
    80: "light showers",
    81: "showers",
    82: "violent showers",
    85: "snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with hail",
    99: "thunderstorm with heavy hail",
}


class WeatherError(RuntimeError):
    """The place is unknown or the weather service did not answer usefully."""


@tool
async def get_weather(
    location: Annotated[str, 'City name, optionally with country, e.g. "Paris, France"'],
    context: ToolContext,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
) -> dict[str, Any]:
    """Get the current weather (temperature, conditions, wind) for a place.

    Args:
        location: The place to look up.
        unit: Temperature unit for the answer; use the one the user prefers.
    """
    import aiohttp

    await context.say(f"Let me check the weather in {location.split(',')[0].strip()}.")
    timeout = aiohttp.ClientTimeout(total=8)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        place = await _geocode(http, location)
        context.logger.info(
            "get_weather: %s -> %s, %s", location, place["latitude"], place["longitude"]
        )
        current, units = await _current(http, place, unit)
    code = current.get("weather_code")
    return {
        "location": ", ".join(
            str(p) for p in (place.get("name"), place.get("admin1"), place.get("country")) if p
        ),
        "temperature": current.get("temperature_2m"),
        "feels_like": current.get("apparent_temperature"),
        "unit": units.get("temperature_2m", "°F" if unit == "fahrenheit" else "°C"),
        "conditions": _CONDITIONS.get(code, "unknown") if isinstance(code, int) else "unknown",
        "humidity_percent": current.get("relative_humidity_2m"),
        "wind_kmh": current.get("wind_speed_10m"),
        "observed_at": current.get("time"),
    }


def _urls() -> tuple[str, str]:
    base = os.environ.get("VLRUN_WEATHER_API_URL", "").rstrip("/")
    if base:
        return f"{base}/v1/search", f"{base}/v1/forecast"
    return GEOCODING_URL, FORECAST_URL


async def _get_json(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> Any:
    import aiohttp

    try:
        async with http.get(url, params=params) as response:
            if response.status != 200:
                raise WeatherError(f"the weather service answered HTTP {response.status}")
            return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise WeatherError(
            f"the weather service could not be reached ({type(exc).__name__})"
        ) from exc


async def _geocode(http: aiohttp.ClientSession, location: str) -> dict[str, Any]:
    name, _, qualifier = location.partition(",")
    params = {"name": name.strip(), "count": "5", "language": "en", "format": "json"}
    data = await _get_json(http, _urls()[0], params)
    results = data.get("results") or []
    if not results:
        raise WeatherError(f"no place called {name.strip()!r} was found; try a nearby city")
    wanted = qualifier.strip().lower()
    if wanted:
        for result in results:
            fields = (result.get("country"), result.get("admin1"), result.get("country_code"))
            if any(isinstance(f, str) and f.lower() == wanted for f in fields):
                return dict(result)
    return dict(results[0])


async def _current(
    http: aiohttp.ClientSession, place: dict[str, Any], unit: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    params = {
        "latitude": str(place["latitude"]),
        "longitude": str(place["longitude"]),
        "current": "temperature_2m,apparent_temperature,relative_humidity_2m,"
        "weather_code,wind_speed_10m",
        "temperature_unit": unit,
        "wind_speed_unit": "kmh",
        "timezone": "auto",
    }
    data = await _get_json(http, _urls()[1], params)
    current = data.get("current")
    if not isinstance(current, dict):
        raise WeatherError("the weather service sent no current conditions")
    return current, data.get("current_units") or {}
