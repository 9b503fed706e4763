from runner.plugins import tool


@tool
def lookup_stock(sku: str) -> int:
    """Stock level for a product code."""
    return len(sku)


@tool
def unbound_helper(note: str) -> str:
    """A tool the profile does not bind."""
    return note
