"""The config wing, pure: YAML with positions -> compose -> validate -> render -> compile.

It imports no SDK connection code, no aiohttp, no audio library and no numpy (an
import-linter contract in pyproject.toml), so `vlrun check` stays fast and runs anywhere.
"""
