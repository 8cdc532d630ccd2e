"""Credential redaction: every key that names a credential loses its value before storage.

Matching (SPEC §2.5), on the key with case folded and every character that is not a
letter or digit removed (so ``-``, ``_``, ``.`` and spaces are ignored):

1. the key is, or contains, one of the long names (``password``, ``apikey``, ``token``…);
2. or it begins with a short name (``pin``, ``pan``, ``pwd``, ``cvv``, ``cvc``) or ends with
   one other than ``pan``, digits after it ignored: separators are ignored, so
   ``pin_code`` and ``pincode``, ``card-cvv2`` and ``cardcvv2`` must be judged alike;
3. or one of its words (split on ``-``, ``_``, ``.``, spaces and camelCase) is a short
   name, optionally followed by digits (``card_pin_hash``).

A short name inside a longer word (``company``, ``spinner``, ``shipping``) or ``pan`` at
the end of one (``span``, ``japan``) is not a match; one at an end otherwise is, even in
an ordinary word (``panel``, ``pinned``): the rule errs towards redacting — a false
positive hides a value, a false negative leaks one.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from eventlog.errors import DecodeError

REDACTED = "[REDACTED]"
MAX_DEPTH = 64  # Debezium rows are flat; JSON columns nest a little, never this deep

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
_SHORT_TUPLE = tuple(sorted(_SHORT))
# at the end of a key, ``pan`` is mostly English (``span``, ``timespan``, ``japan``): a card's
# PAN there is matched as a word only (``card_pan``, ``cardPan``)
_SHORT_SUFFIXES = tuple(sorted(_SHORT - {"pan"}))
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_NOT_ALNUM = re.compile(r"[\W_]+")
_TRAILING_DIGITS = re.compile(r"\d+$")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")


@functools.lru_cache(maxsize=8192)
def is_credential_key(key: str) -> bool:
    """True when ``key`` names a credential (cached: column names repeat in every event)."""
    norm = _NOT_ALNUM.sub("", key.casefold())
    if any(name in norm for name in _LONG):
        return True
    core = _TRAILING_DIGITS.sub("", norm)
    if core.startswith(_SHORT_TUPLE) or core.endswith(_SHORT_SUFFIXES):
        return True
    return any(_TRAILING_DIGITS.sub("", w.casefold()) in _SHORT for w in _WORDS.split(key) if w)


def path_of(parts: list[str | int]) -> str:
    """The ``redacted_paths`` form of a location: ``after.meta``, ``after["odd.key"][0]``."""
    return _path(parts)


def _path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:  # a key with dots, brackets or spaces stays unambiguous
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


def redact_tree(value: Any, path: str, found: list[str]) -> bool:
    """Replace credential values in place, append their paths; True if a value changed.

    Raises :class:`DecodeError` for values nested deeper than :data:`MAX_DEPTH`.
    """
    parts: list[str | int] = [path] if path else []
    return _redact(value, parts, found, [False])


def redact_at(value: Any, parts: list[str | int], found: list[str]) -> bool:
    """:func:`redact_tree` of a value found at ``parts`` (its paths continue from there)."""
    return _redact(value, list(parts), found, [False])


def scan_tree(value: Any, found: list[str]) -> tuple[bool, bool]:
    """:func:`redact_tree` from the root that also tells whether it met a float.

    (changed, saw_float): the parser uses the second to decide, in the same walk, whether
    the document needs an exact re-parse.
    """
    floats = [False]
    changed = _redact(value, [], found, floats)
    return changed, floats[0]


_SAFE_KEYS: set[str] = set()  # keys already seen not to name a credential
_SAFE_KEYS_MAX = 100_000


def _redact(value: Any, parts: list[str | int], found: list[str], floats: list[bool]) -> bool:
    # Hot path of ingest: a flat row whose keys are all known safe costs a few C-level set
    # operations, with no Python loop over its columns.
    if len(parts) > MAX_DEPTH:
        raise DecodeError(f"nested deeper than {MAX_DEPTH} levels")
    changed = False
    if isinstance(value, dict):
        if not _SAFE_KEYS.issuperset(value):
            changed = _redact_keys(value, parts, found)
        types = set(map(type, value.values()))
        if float in types:
            floats[0] = True
        if dict in types or list in types:
            for key, child in value.items():
                if isinstance(child, dict | list) and not is_credential_key(key):
                    parts.append(key)
                    changed |= _redact(child, parts, found, floats)
                    parts.pop()
    elif isinstance(value, list):
        types = set(map(type, value))
        if float in types:
            floats[0] = True
        if dict in types or list in types:
            for index, item in enumerate(value):
                if isinstance(item, dict | list):
                    parts.append(index)
                    changed |= _redact(item, parts, found, floats)
                    parts.pop()
    return changed


def _redact_keys(value: dict[str, Any], parts: list[str | int], found: list[str]) -> bool:
    changed = False
    for key in value:
        if key in _SAFE_KEYS:
            continue
        if not is_credential_key(key):
            if len(_SAFE_KEYS) < _SAFE_KEYS_MAX:
                _SAFE_KEYS.add(key)
            continue
        found.append(_path([*parts, key]))
        if value[key] != REDACTED:
            value[key] = REDACTED
            changed = True
    return changed


# ---------------------------------------------------------------- text that is not JSON

# A key, bare or quoted (quotes escaped too: JSON text inside a string), followed by ``:``
# or ``=``: ``"password": …``, ``api-key=…``, ``\"token\":\"…\"``. A key may spell its
# characters as JSON escapes (``pass\u0077ord``, ``pass\/word``), once or twice escaped
# (text inside a string, a repr in a reason): they are decoded before the key is judged.
_ESCAPE = r"\\{1,2}(?:u[0-9A-Fa-f]{4}|[/bfnrt])"
_KEY = re.compile(
    rf"""(\\?["']?)"""  # the opening quote, if any (closed by the same)
    rf"""((?:[A-Za-z0-9_\-]|{_ESCAPE})(?:[A-Za-z0-9_\-. ]|{_ESCAPE}){{0,99}})"""  # the key
    r"""\1\s*[:=]\s*"""
)
_ESCAPED = re.compile(r"\\{1,2}(?:u([0-9A-Fa-f]{4})|([/bfnrt]))")
_CLOSE = {"{": "}", "[": "]"}


def _unescaped(key: str) -> str:
    """``key`` with its JSON escapes decoded (the others are punctuation the match ignores)."""
    if "\\" not in key:
        return key
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else "", key)


def _value_end(text: str, start: int) -> int:
    """End of the value starting at ``start``: a quoted string, a bracketed block, or a token.

    Unterminated strings and blocks run to the end of the text (truncated input).
    """
    if start >= len(text):
        return start
    if text.startswith('\\"', start):  # a string inside JSON text: up to its escaped end
        end = text.find('\\"', start + 2)
        return len(text) if end < 0 else end + 2
    first = text[start]
    if first in "\"'":
        i = start + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == first:
                return i + 1
            i += 1
        return len(text)
    if first in _CLOSE:
        depth, i, quote = 0, start, ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(text)
    i = start
    while i < len(text) and text[i] not in ",;&}]\r\n\t ":
        i += 1
    return i


def redact_text(raw: bytes) -> bytes:
    """Best-effort redaction of bytes that are not valid JSON (for dead letters).

    Every ``key: value`` or ``key=value`` whose key names a credential has its value
    replaced, whether the value is a string (even unterminated), a nested block or a bare
    token. Bytes that are not UTF-8 are handled as Latin-1, which round-trips every byte.
    """
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin-1"
    out: list[str] = []
    done = 0
    pos = 0
    while True:
        match = _KEY.search(text, pos)
        if match is None:
            break
        if not is_credential_key(_unescaped(match.group(2))):
            pos = match.end()
            continue
        end = _value_end(text, match.end())
        out.append(text[done : match.end()])
        out.append(f'"{REDACTED}"')
        done = pos = max(end, match.end())
    if not out:
        return raw
    out.append(text[done:])
    return "".join(out).encode(encoding)
