from runner.plugins import tool


@tool
def echo_text(text: str) -> str:
    """Echo text."""
    return text


@tool
def echo_text_twice(text: str, times: int = 2) -> str:
    """Echo text several times."""
    return text * times
