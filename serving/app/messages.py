"""How a validation problem is worded: the field's path, then what is wrong, cut to a bounded
length. Shared by the HTTP error responses (`app.errors`) and the columnar contract
(`app.contract`), which must say exactly what the API says; no web framework here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Client-chosen text quoted in an error (a field name) is cut to this many characters.
MAX_QUOTED_CHARS = 64
# A message (which may list a category field's allowed values) is cut to this length.
MAX_MESSAGE_CHARS = 512
# The whole 422 body, whatever the input: errors beyond it are counted, not listed.
MAX_ERROR_BODY_BYTES = 8 * 1024
CUT = "…[cut]"


def cut(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """`text`, or its first `limit` characters marked as cut."""
    return text if len(text) <= limit else text[:limit] + CUT


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "records", 3, "island")` -> `records[3].island`; the body itself -> `body`."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def describe(error: dict[str, Any]) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else cut(str(part)) for part in error.get("loc", ())]
    path = field_path(loc)
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "extra_forbidden":
        message = "is not a field of this model (GET /model lists the input schema)"
    return {
        "loc": loc,
        "msg": cut(f"{path}: {message}", MAX_MESSAGE_CHARS),
        "type": cut(str(error.get("type"))),
    }
