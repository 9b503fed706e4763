"""Facts about the service that `vlrun check` and the emulator both apply, kept in one place so
the offline check and the offline service cannot disagree (docs/emulator.md#azure-speech-vad)."""

from __future__ import annotations

#: The Azure semantic VADs: the only turn detection azure-speech transcription accepts on a
#: realtime model (the reported error names AzureSemanticVAD and AzureMultilingualSemanticVAD;
#: the _en variant is an AzureSemanticVAD).
AZURE_SEMANTIC_VADS = (
    "azure_semantic_vad",
    "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
)


def realtime_model(model: str | None) -> bool:
    """A speech-to-speech model (gpt-realtime, gpt-4o-realtime-preview, …), not a cascaded one."""
    return bool(model) and "realtime" in str(model)
