"""Files starting with an underscore are helpers and are never loaded as tool modules."""

raise RuntimeError("a _private.py file must not be imported by discovery")
