"""API keys: who may call the service (docs/security.md: the keys, rotation, the threats).

`SERVICE_API_KEYS` names the clients and their keys, `name:key,name:key` or a JSON object.
Set, every request but `/health` and `/ready` must carry one, as `Authorization: Bearer
<key>` or `X-API-Key`, or is answered 401 before it is routed. A key is at least 32 random
bytes, so a plain SHA-256 digest is all that is kept (a slow key-derivation function
protects guessable passwords, and would cost every request milliseconds). The check runs in
the request middleware, not as a `Depends`, leaving the prediction routes' fast path alone.

`python -m app.auth` prints a new key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping

# 32 random bytes written in URL-safe base64, as `new_key` writes them: the shortest a key
# may be. Shorter keys are refused at start-up.
KEY_BYTES = 32
MIN_KEY_CHARS = 43
# Names appear in logs and metrics, and keys in HTTP headers: neither may hold separators,
# spaces or control characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_KEY = re.compile(r"[\x21-\x7e]+")
# The checks that must answer without a key: the load balancer's and the container's.
OPEN_PATHS = frozenset({"/health", "/ready"})
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="api"')


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def parse(value: str | Mapping[str, object]) -> dict[str, str]:
    """`{name: key}` from `name:key,name:key`, a JSON object, or a mapping.

    Raises ValueError naming the problem and the key's name, never quoting a key.
    """
    if isinstance(value, Mapping):
        pairs: Iterable[tuple[str, object]] = value.items()
    elif value.lstrip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            raise ValueError("is not a valid JSON object") from None
        if not isinstance(loaded, dict):
            raise ValueError("is not a JSON object")
        pairs = loaded.items()
    else:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if any(":" not in entry for entry in entries):
            raise ValueError("each entry must be name:key (comma-separated)")
        pairs = [tuple(entry.split(":", 1)) for entry in entries]  # type: ignore[misc]
    keys: dict[str, str] = {}
    for name, key in pairs:
        name = str(name).strip()
        if not _NAME.fullmatch(name):
            raise ValueError(
                "a key name must be 1 to 64 letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit (got {len(name)} characters)"
            )
        if name in keys:
            raise ValueError(f"the name {name!r} is given twice")
        if not isinstance(key, str) or not _KEY.fullmatch(key.strip()):
            raise ValueError(f"key {name!r} is empty or holds spaces or control characters")
        key = key.strip()
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(
                f"key {name!r} is {len(key)} characters: a key must be at least "
                f"{KEY_BYTES} random bytes ({MIN_KEY_CHARS} characters as "
                "`python -m app.auth` generates them)"
            )
        keys[name] = key
    if len(set(keys.values())) != len(keys):
        raise ValueError("two names share one key: give each client its own")
    return keys


def digest(key: str | bytes) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


class ApiKeys:
    """The stored digests, and the check of one request's headers against them."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = [(name, bytes.fromhex(value)) for name, value in digests.items()]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def name_of(self, presented: bytes | None) -> str | None:
        """The name of the key presented, or None for none or a wrong one."""
        if presented is None:
            return None
        candidate = hashlib.sha256(presented).digest()
        found = None
        # Every digest is compared, whichever matches: the time does not depend on which.
        for name, stored in self._digests:
            if hmac.compare_digest(candidate, stored):
                found = name
        return found


def presented_key(headers: Mapping[bytes, bytes]) -> bytes | None:
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and credentials.strip():
            return credentials.strip()
    key = headers.get(b"x-api-key")
    return key.strip() if key else None


if __name__ == "__main__":
    print(new_key())
