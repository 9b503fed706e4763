from runner.plugins import tool


@tool
async def get_stock_price(symbol: str) -> dict:
    """Latest price for a ticker symbol."""
    return {"symbol": symbol.upper(), "price": 123.5}
