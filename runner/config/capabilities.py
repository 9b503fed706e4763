"""What each model family, api-version and deployment mode accepts: the capability matrix
`vlrun check` applies at file:line.

Two tables, each row with the document it comes from:

- :data:`MODELS`, the model catalog of the Voice Live overview page (and GPT-Live's page);
  ``connection.model`` outside it is a warning with a did-you-mean, never an error: a resource
  may have deployments the catalog does not list, and BYOM names the caller's own deployment.
- :data:`RULES`, one row per capability that depends on the model, the api-version or the
  deployment mode. Each row names the check that applies it (:func:`capability_problems`
  runs every one); docs/profiles.md's "Capability matrix" table is generated from it.

Region is not a column: the endpoint names a resource, not its region, so vlrun cannot tell
offline which region a profile will meet (the regions table is linked from docs/profiles.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeGuard

from runner.config.locator import Locator
from runner.config.service import BYOM_QUERY, V1
from runner.config.suggest import suggest
from runner.errors import Problem

#: The model the runner connects to when a profile names none (runner/live/connect.py).
DEFAULT_MODEL = "gpt-realtime"

_OVERVIEW = "voice-live.md (ms.date 09/29/2026), 'Supported models and regions'"
_GPT_LIVE = "gpt-live.md (ms.date 08/24/2026), 'Supported models'"


# The records here are NamedTuples, not frozen dataclasses: every `vlrun check` imports this
# module, and a frozen dataclass costs ~0.4 ms to create (a NamedTuple ~0.07 ms).


class Model(NamedTuple):
    """One model of the catalog."""

    name: str
    family: str  # gpt-realtime | chat | phi | azure-realtime | gpt-live
    tier: str  # the pricing tier, or "preview"
    source: str


def _m(names: str, family: str, tier: str, source: str = _OVERVIEW) -> tuple[Model, ...]:
    return tuple(Model(n, family, tier, source) for n in names.split())


# source: MicrosoftDocs azure-ai-docs articles/ai-services/speech-service/voice-live.md, the
# table under "Supported models and regions" (and its pricing table for gpt-5-chat).
MODELS: tuple[Model, ...] = (
    *_m("gpt-realtime-2.1 gpt-realtime-2.1-datazone gpt-realtime-1.5", "gpt-realtime", "Pro"),
    *_m("gpt-realtime-1.5-datazone gpt-realtime gpt-realtime-datazone", "gpt-realtime", "Pro"),
    *_m("gpt-realtime-2.1-mini gpt-realtime-mini", "gpt-realtime", "Standard"),
    *_m("gpt-4o gpt-4.1 gpt-5.6-terra gpt-5.4 gpt-5.2 gpt-5.1 gpt-5 gpt-5-chat", "chat", "Pro"),
    *_m("gpt-4o-mini gpt-4.1-mini gpt-5.6-luna gpt-5-mini", "chat", "Standard"),
    *_m("gpt-4.1-nano gpt-5-nano", "chat", "Lite"),
    *_m("phi4-mm-realtime", "phi", "Lite (preview)"),
    *_m("azure-realtime", "azure-realtime", "Pro"),
    # source: gpt-live.md "Supported models" (public preview)
    *_m("gpt-live-1 gpt-live-1-mini", "gpt-live", "preview", _GPT_LIVE),
)
CATALOG = tuple(m.name for m in MODELS)
# looked up for every profile `vlrun check` reads: a dict, not a scan of the catalog
_FAMILY = {m.name: m.family for m in MODELS}
#: Reached through BYOM only (voice-live.md: "supported and tested ... but aren't pre-deployed").
BYOM_ONLY = ("gpt-5.5", "gpt-5.4-mini", "gpt-5.4-nano")


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # a resolved profile's mappings are dicts and mappingproxies: known by type first, since
    # isinstance(value, Mapping) goes through the ABC machinery for every setting of every profile
    return type(value) in (dict, MappingProxyType) or isinstance(value, Mapping)


def family(model: str | None) -> str | None:
    """The family of a model name: catalog first, then by the name's shape; None: unknown."""
    if not model or not isinstance(model, str):
        return None
    known = _FAMILY.get(model)
    if known is not None:
        return known
    name = model.lower()
    if name.startswith("gpt-live"):
        return "gpt-live"
    if name.startswith("gpt-realtime") or (name.startswith("gpt-4o") and "realtime" in name):
        return "gpt-realtime"  # older previews: gpt-4o-realtime-preview, gpt-4o-mini-realtime-…
    if name.startswith("azure-realtime"):
        return "azure-realtime"
    if name.startswith("phi"):
        return "phi"
    if name.startswith(("gpt-4", "gpt-5")):
        return "chat"
    return None


class Target(NamedTuple):
    """What a profile connects to, as far as the capability checks need it."""

    model: str | None  # None: an agent brings its own model
    family: str | None
    assumed: bool  # the model is the runner's default, not the profile's (env may change it)
    version: str
    byom: str | None
    classic_agent: bool
    agent: bool


def target_of(doc: Mapping[str, Any], version: str) -> Target:
    conn = doc.get("connection") or {}
    agent = conn.get("agent")
    byom = conn.get("byom")
    model = conn.get("model") or None
    assumed = model is None and not agent
    if assumed:
        model = DEFAULT_MODEL
    fam = family(model)
    if byom == "byom-azure-openai-realtime" and fam is None:
        fam = "gpt-realtime"  # the caller's realtime deployment
    elif byom == "byom-azure-openai-chat-completion" and fam is None:
        fam = "chat"
    return Target(
        model=model,
        family=fam,
        assumed=assumed,
        version=version,
        byom=byom if isinstance(byom, str) else None,
        classic_agent=_is_mapping(agent) and "id" in agent,
        agent=bool(agent),
    )


Check = Callable[[Mapping[str, Any], Target, Locator], Iterator[Problem]]


class Rule(NamedTuple):
    """One row of the capability matrix."""

    name: str
    setting: str  # the profile setting it is about
    accepts: str  # what accepts it, in words
    otherwise: str  # what `vlrun check` says otherwise: error | warning
    source: str
    check: Check


# --- the checks ------------------------------------------------------------------------------


def _model_catalog(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    model = (doc.get("connection") or {}).get("model")
    if not isinstance(model, str) or not model or t.byom or model in _FAMILY:
        return
    if model in BYOM_ONLY:
        yield loc.problem(
            ("connection", "model"),
            f"{model} is not pre-deployed on Voice Live: it is reached through BYOM",
            hint="deploy it in your Foundry resource and set connection.byom: "
            "byom-azure-openai-chat-completion",
            severity="warning",
        )
        return
    yield loc.problem(
        ("connection", "model"),
        f"model {model!r} is not in the Voice Live model catalog",
        hint=suggest(model, CATALOG)
        or "a deployment of your own is reached with connection.byom; the catalog: "
        "docs/profiles.md#capability-matrix",
        severity="warning",
    )


def _td_type(doc: Mapping[str, Any]) -> Any:
    td = doc.get("turn_detection")
    return td.get("type") if _is_mapping(td) else td


def _on(t: Target) -> str:
    return f"model {t.model}" + (" (the default)" if t.assumed else "")


#: source: REF 2026-06-01-preview "RealtimeOpenAISemanticVAD": "Only available for
#: `gpt-realtime` and `gpt-realtime-mini` models" (their data-zone deployments are the same
#: models); the later versions of the family (1.5, 2.1) are not named, so they get a warning.
SEMANTIC_VAD_MODELS = ("gpt-realtime", "gpt-realtime-mini", "gpt-realtime-datazone")


def _semantic_vad(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    if _td_type(doc) != "semantic_vad" or t.family is None or t.model in SEMANTIC_VAD_MODELS:
        return
    named = t.family == "gpt-realtime" and not t.byom
    yield loc.problem(
        ("turn_detection",),
        "semantic_vad is OpenAI's detector: the API reference names only gpt-realtime and "
        f"gpt-realtime-mini, not {_on(t)}",
        hint="use azure_semantic_vad (or _multilingual), which every model takes",
        severity="warning" if named or t.byom else "error",
    )


def _mcp(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    if not doc.get("mcp_servers"):
        return
    if t.family == "phi":
        yield loc.problem(
            ("mcp_servers",),
            f"MCP servers are not supported with phi models ({_on(t)})",
            hint="pick a gpt-realtime or gpt model, or drop mcp_servers",
        )
    if t.classic_agent:
        yield loc.problem(
            ("mcp_servers",),
            "MCP servers are not supported with Foundry (classic) agents (`agent.id`)",
            hint="bind a current agent (name + project), or give the agent its own tools",
        )


def _voice_type(doc: Mapping[str, Any]) -> Any:
    voice = doc.get("voice")
    return voice.get("type") if _is_mapping(voice) else None


def _native_voice(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    # source: REF 2026-06-01-preview "RealtimeAzureRealtimeNativeVoice": "The azure-realtime
    # model accepts only azure-realtime-native voices, and azure-realtime-native voices aren't
    # accepted by other models."
    native = _voice_type(doc) == "azure-realtime-native"
    if native and t.family not in (None, "azure-realtime"):
        yield loc.problem(
            ("voice", "type"),
            f"azure-realtime-native voices are used only with the azure-realtime model, "
            f"not {_on(t)}",
            hint="set connection.model: azure-realtime, or pick another voice type",
            severity="warning" if t.assumed else "error",
            at_key=True,
        )
    if t.family == "azure-realtime" and doc.get("voice") is not None and not native:
        yield loc.problem(
            ("voice",),
            "the azure-realtime model accepts only azure-realtime-native voices",
            hint="voice: {type: azure-realtime-native, name: ava} (or another native name)",
        )


# source: REF 2026-06-01-preview / 2026-07-15 RealtimeRequestSession `temperature`: "The
# allowed temperature values are limited to [0.6, 1.2]"; the SDK's RequestSession says the same.
TEMPERATURE_RANGE = (0.6, 1.2)


def _temperature(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    temp = doc.get("temperature")
    low, high = TEMPERATURE_RANGE
    if not isinstance(temp, int | float) or isinstance(temp, bool) or low <= temp <= high:
        return
    realtime = t.family in ("gpt-realtime", "azure-realtime")
    yield loc.problem(
        ("temperature",),
        f"temperature {temp} is outside Voice Live's range {low} to {high}"
        + ("" if realtime else f" (as the API reference gives it; {_on(t)} may differ)"),
        hint=f"use a value from {low} to {high}",
        severity="error" if realtime and not t.assumed else "warning",
    )


def _byom(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    conn = doc.get("connection") or {}
    if not t.byom:
        return
    if not conn.get("model"):
        yield loc.problem(
            ("connection", "byom"),
            "BYOM needs connection.model: the name of your deployment",
            hint="e.g. model: my-gpt-4.1 (the name given at deployment time)",
        )
    if conn.get("agent"):
        yield loc.problem(
            ("connection", "byom"),
            "BYOM and an agent binding exclude each other (the agent brings its model)",
        )
    query = conn.get("query") or {}
    if BYOM_QUERY in query:
        yield loc.problem(
            ("connection", "query", BYOM_QUERY),
            f"the `{BYOM_QUERY}` query parameter is what connection.byom sends; give one",
            hint="drop connection.query.profile",
            at_key=True,
        )


def _preview_version(version: str) -> bool:
    return version.endswith("-preview")


SMART_EOT = "smart_end_of_turn_detection"
#: source: REF 2026-06-01-preview "What's new" (smart end-of-turn detection is new there);
#: REF 2026-07-15 "What's new": "Smart turn detection ... remain in preview".
SMART_EOT_SINCE = "2026-06-01-preview"


def _smart_eot(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    td = doc.get("turn_detection")
    eou = td.get("end_of_utterance_detection") if _is_mapping(td) else None
    if not _is_mapping(eou) or eou.get("model") != SMART_EOT:
        return
    path = ("turn_detection", "end_of_utterance_detection", "model")
    if t.version == V1:
        yield loc.problem(
            path,
            "smart end-of-turn detection is a preview feature, and no VoiceLive-Features key "
            "switches it on for api_version v1 (none is documented)",
            hint=f"target api_version {SMART_EOT_SINCE} (or a later -preview version)",
        )
    elif not _preview_version(t.version) or t.version[:10] < SMART_EOT_SINCE[:10]:
        yield loc.problem(
            path,
            f"smart end-of-turn detection is in preview: -preview api_versions from "
            f"{SMART_EOT_SINCE} take it, not {t.version}",
            hint=f"set connection.api_version: {SMART_EOT_SINCE}",
        )
    for key in ("threshold", "timeout"):
        if key in eou:
            yield loc.problem(
                (*path[:-1], key),
                f"smart end-of-turn detection takes threshold_level and timeout_ms, not {key}",
                at_key=True,
            )


def _invoke_input(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    agent = (doc.get("connection") or {}).get("agent")
    if not _is_mapping(agent) or "invoke_input" not in agent:
        return
    if "id" in agent:
        yield loc.problem(
            ("connection", "agent", "invoke_input"),
            "invoke_input is for hosted agents, bound by name + project, not classic agents",
            at_key=True,
        )


def _gpt_live(doc: Mapping[str, Any], t: Target, loc: Locator) -> Iterator[Problem]:
    if t.family == "gpt-live":
        from runner.config import gpt_live  # GPT-Live's own rules: only its profiles import them

        yield from gpt_live.refusals(doc, loc)
    elif doc.get("gpt_live") is not None:
        yield loc.problem(
            ("gpt_live",),
            f"gpt_live settings need a GPT-Live model, not {_on(t)}",
            hint="set connection.model: gpt-live-1 (or gpt-live-1-mini), or drop gpt_live",
            at_key=True,
        )


# --- the matrix ------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(
        "model-catalog",
        "connection.model",
        "the models of the Voice Live overview's catalog (and gpt-live-1, gpt-live-1-mini)",
        "warning, with a did-you-mean",
        _OVERVIEW + "; " + _GPT_LIVE,
        _model_catalog,
    ),
    Rule(
        "semantic-vad",
        "turn_detection: semantic_vad",
        "gpt-realtime and gpt-realtime-mini (a warning on the family's later versions, 1.5 and "
        "2.1, which the reference does not name)",
        "error",
        "REF 2026-06-01-preview 'RealtimeOpenAISemanticVAD' ('Only available for gpt-realtime "
        "and gpt-realtime-mini models')",
        _semantic_vad,
    ),
    Rule(
        "mcp",
        "mcp_servers",
        "every model but phi; current agents, not classic ones",
        "error",
        "azure-ai-voicelive 1.2.0 changelog; voice-live-faq.yml ('MCP ... not supported with "
        "Foundry (classic) agents')",
        _mcp,
    ),
    Rule(
        "native-voice",
        "voice.type: azure-realtime-native",
        "model azure-realtime only (and api_version 2026-06-01-preview or later); that model "
        "takes no other voice",
        "error (a warning when the model is the default)",
        "REF 2026-06-01-preview 'RealtimeAzureRealtimeNativeVoice' ('The azure-realtime model "
        "accepts only azure-realtime-native voices, and azure-realtime-native voices aren't "
        "accepted by other models')",
        _native_voice,
    ),
    Rule(
        "temperature",
        "temperature",
        "0.6 to 1.2",
        "error on realtime models, a warning on others",
        "REF 2026-07-15 RealtimeRequestSession ('limited to [0.6, 1.2]')",
        _temperature,
    ),
    Rule(
        "byom",
        "connection.byom",
        "a model deployment of your own (connection.model), no agent",
        "error",
        "how-to-bring-your-own-model.md ('profile=<your-byom-mode>&model=<your-model-deployment>')",
        _byom,
    ),
    Rule(
        "smart-eot",
        "turn_detection.end_of_utterance_detection.model: smart_end_of_turn_detection",
        "-preview api_versions from 2026-06-01-preview; not GA versions, not v1",
        "error",
        "REF 2026-06-01-preview 'What's new'; REF 2026-07-15 ('Smart turn detection ... "
        "remain in preview'); azure-ai-voicelive 1.3.0 removed it",
        _smart_eot,
    ),
    Rule(
        "invoke-input",
        "connection.agent.invoke_input",
        "hosted agents (name + project)",
        "error",
        "how-to-voice-live-hosted-agent-integration.md; azure-ai-voicelive 1.3.0 "
        "(`invoke_input` on response.create)",
        _invoke_input,
    ),
    Rule(
        "gpt-live",
        "connection.model: gpt-live-1 / gpt-live-1-mini",
        "its own instructions, voice (a GPT-Live name), one audio format, delegation, "
        "translation, a fixed greeting; tools and web_search only through a delegation "
        "deployment. Refused: turn_detection, noise_reduction, echo_cancellation, "
        "transcription, modalities, temperature, max_response_tokens, avatar, animation, "
        "interim_response, mcp_servers, file_search, metadata, flow, api_version, query, "
        "preview, byom, agent",
        "error",
        "gpt-live.md ('Output: Voice only', no noise-reduction stage); docs/gpt-live.md "
        "('Refused')",
        _gpt_live,
    ),
)
#: the rules that apply to a GPT-Live profile (the others are about Voice Live sessions)
GPT_LIVE_RULES = frozenset({"model-catalog", "gpt-live"})
# each profile's checks, chosen once here rather than filtered from RULES per profile
_CHECKS = tuple(r.check for r in RULES)
_GPT_LIVE_CHECKS = tuple(r.check for r in RULES if r.name in GPT_LIVE_RULES)


def capability_problems(doc: Mapping[str, Any], loc: Locator, version: str) -> list[Problem]:
    """Every capability-matrix problem of a resolved profile document for ``version``."""
    target = target_of(doc, version)
    checks = _GPT_LIVE_CHECKS if target.family == "gpt-live" else _CHECKS
    return [p for check in checks for p in check(doc, target, loc)]


def markdown() -> Iterator[str]:
    """The capability matrix as the table in docs/profiles.md."""
    yield "| setting | accepted by | otherwise | source |"
    yield "|---|---|---|---|"
    for r in RULES:
        yield f"| `{r.setting}` | {r.accepts} | {r.otherwise} | {r.source} |"


def catalog_markdown() -> Iterator[str]:
    yield "| model | family | tier |"
    yield "|---|---|---|"
    for m in MODELS:
        yield f"| `{m.name}` | {m.family} | {m.tier} |"
