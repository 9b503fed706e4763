"""Tools shipped in an installed package (tests only)."""
