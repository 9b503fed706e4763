from runner.plugins import tool


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return query
