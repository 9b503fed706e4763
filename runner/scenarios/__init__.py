"""The scenarios wing: `vlrun test` (scenario files, runs, scripted edges, observer, results,
simulated callers and judges, repeats and gates, a scenario over a phone line, flow coverage,
the HTML report, record and replay)."""
