"""The emulator's OpenAI-compatible chat completions endpoint (docs/evals.md): judges and
simulated callers answered by rules, never by a model."""
