from typing import Any

Fields = tuple[str, int, str, int, int, Any, Any, Any, Any, Any]

def scan(data: bytes, start: int, /) -> Fields | None: ...
