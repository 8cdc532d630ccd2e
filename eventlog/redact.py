"""Credential redaction: every key that names a credential loses its value before storage.

Matching (SPEC §2.5), on the key with case folded and ``-``/``_`` removed:

1. the key is, or contains, one of the long names (``password``, ``apikey``, ``token``…);
2. or one of its words (split on ``-``, ``_``, ``.``, spaces and camelCase) is a short
   name (``pin``, ``pan``, ``pwd``, ``cvv``, ``cvc``), optionally followed by digits.

The rule errs towards redacting: a false positive hides a value, a false negative leaks one.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_LONG = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "privatekey",
    "cardnumber",
    "authorization",
    "cookie",
    "session",
)
_SHORT = frozenset({"pwd", "pin", "cvv", "cvc", "pan"})
_WORDS = re.compile(r"[-_.\s]+|(?<=[a-z0-9])(?=[A-Z])")
_TRAILING_DIGITS = re.compile(r"\d+$")


def is_credential_key(key: str) -> bool:
    """True when ``key`` names a credential."""
    norm = key.lower().replace("-", "").replace("_", "")
    if any(name in norm for name in _LONG):
        return True
    if _TRAILING_DIGITS.sub("", norm) in _SHORT:
        return True
    return any(_TRAILING_DIGITS.sub("", w.lower()) in _SHORT for w in _WORDS.split(key) if w)


def redact_tree(value: Any, path: str, found: list[str]) -> bool:
    """Replace credential values in place, append their paths; True if a value changed."""
    changed = False
    if isinstance(value, dict):
        for key in list(value):
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and is_credential_key(key):
                found.append(child_path)
                if value[key] != REDACTED:
                    value[key] = REDACTED
                    changed = True
            else:
                changed |= redact_tree(value[key], child_path, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            changed |= redact_tree(item, f"{path}[{index}]", found)
    return changed


_JSON_PAIR = re.compile(
    r'"((?:[^"\\]|\\.){1,200})"(\s*:\s*)("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null|\{[^{}]*\}|\[[^\[\]]*\])'
)


def redact_text(raw: bytes) -> bytes:
    """Best-effort redaction of bytes that are not valid JSON (for dead letters).

    Any ``"key": value`` pair whose key names a credential has its value replaced.
    Bytes that are not UTF-8 are handled as Latin-1, which round-trips every byte.
    """
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin-1"

    def _sub(match: re.Match[str]) -> str:
        if is_credential_key(match.group(1)):
            return f'"{match.group(1)}"{match.group(2)}"{REDACTED}"'
        return match.group(0)

    redacted = _JSON_PAIR.sub(_sub, text)
    return raw if redacted == text else redacted.encode(encoding)
