"""`vlrun serve`: one process hosting many conversations (browser console, phone edges)."""
