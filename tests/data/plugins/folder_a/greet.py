"""A plain tool folder: one sync tool, one async tool, and a helper that is not a tool."""

from runner.plugins import ToolContext, tool


@tool
def greet(name: str) -> str:
    """Say hello to someone."""
    return f"Hello, {name}!"


@tool(name="lookup_order")
async def find_order(order_id: str, context: ToolContext) -> dict:
    """Look up an order by id."""
    return {"order_id": order_id, "profile": context.profile_name, "vars": dict(context.vars)}


def helper() -> str:
    return "not a tool"
