"""The scenarios wing: `vlrun test` (scenario files, runs, scripted edges, observer, results,
record and replay)."""
