"""Credential redaction: every key that names a credential loses its value before storage.

Matching (SPEC §2.5), on the key with case folded and every character that is not a
letter or digit removed (so ``-``, ``_``, ``.`` and spaces are ignored: ``card_pan`` and
``CARDPAN`` are judged alike), digits at its end ignored:

1. the key contains one of the long names (``password``, ``apikey``, ``token``…), or
   ``pwd``, ``cvv`` or ``cvc`` anywhere (no ordinary word contains them);
2. or it begins with ``pin`` or ``pan``, or ends with ``pin``, or ends with ``pan`` but not
   ``span`` or ``japan`` (``timespan``, ``japan`` are English);
3. or ``pin``/``pan`` stands next to what makes it a card or user secret: after ``card``,
   ``user``, ``old``, ``new``, ``payer``, ``payee``, ``customer``, ``account``, ``acct``,
   ``holder`` or ``owner`` (``userpinhash``, ``cardpanlast4``), or before ``hash``,
   ``code``, ``number``, ``num``, ``no``, ``block`` or ``digits`` (``pincode``);
4. or one of its words (split on ``-``, ``_``, ``.``, spaces and camelCase) is a short
   name, optionally followed by digits (``x_pin_y``) — separated words only add matches.

A short name inside a longer word (``company``, ``spinner``, ``shipping``, ``opinion``,
``participant``) is not a match; one at an end otherwise is, even in an ordinary word
(``panel``, ``pinned``, ``spin``): the rule errs towards redacting — a false positive
hides a value, a false negative leaks one.
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
# at the end of a key, ``pan`` is judged apart: ``span``/``japan`` endings are English
_SHORT_SUFFIXES = tuple(sorted(_SHORT - {"pan"}))
_ANYWHERE = re.compile(r"pwd|cvv|cvc")
_ENGLISH_PAN = ("span", "japan")
_COMPOSED = re.compile(
    r"(?:card|user|old|new|payer|payee|customer|account|acct|holder|owner)(?:pin|pan)"
    r"|(?:pin|(?<!s)(?<!ja)pan)(?:hash|code|number|num|no|block|digits)"
)
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_NOT_ALNUM = re.compile(r"[\W_]+")
_TRAILING_DIGITS = re.compile(r"\d+$")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")


@functools.lru_cache(maxsize=8192)
def is_credential_key(key: str) -> bool:
    """True when ``key`` names a credential (cached: column names repeat in every event)."""
    norm = _NOT_ALNUM.sub("", key.casefold())
    if any(name in norm for name in _LONG) or _ANYWHERE.search(norm):
        return True
    core = _TRAILING_DIGITS.sub("", norm)
    if core.startswith(_SHORT_TUPLE) or core.endswith(_SHORT_SUFFIXES):
        return True
    if core.endswith("pan") and not core.endswith(_ENGLISH_PAN):
        return True
    if _COMPOSED.search(norm):
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
    # a quoted key may hold any character but its quote (``"user:password"``, ``"pass€"``)
    rf"""(?:(["'])((?:(?!\1)[^\\\r\n]|{_ESCAPE}){{1,100}})\1"""
    # else the opening quote, if any (escaped too: JSON text in a string), closed by the same;
    # a bare key starts after a character no key has and runs possessively: each run is
    # tried once, not from each of its characters (1 MB of letters took 7 s, now linear)
    rf"""|(\\?["']?)(?<![A-Za-z0-9_\-])"""
    rf"""((?:[A-Za-z0-9_\-]|{_ESCAPE})(?:[A-Za-z0-9_\-. ]|{_ESCAPE})*+)\3)"""
    r"""\s*(?:=>|[:=])\s*"""  # JSON's ``:``, ``=`` of key=value text, Ruby's ``=>``
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
    i = start  # a bare value runs to a delimiter, spaces included (``sk_live two words``)
    while i < len(text) and text[i] not in ",;&}]\r\n\t":
        i += 1
    return i


def redact_text(raw: bytes) -> bytes:
    """Best-effort redaction of bytes that are not valid JSON (for dead letters).

    Every ``key: value`` or ``key=value`` whose key names a credential has its value
    replaced, whether the value is a string (even unterminated), a nested block or a bare
    token. UTF-16 text (a byte-order mark, or NULs at every other byte) is matched as
    such and re-encoded alike; other bytes that are not UTF-8 are handled as Latin-1,
    which round-trips every byte.
    """
    text, encoding = _decoded(raw)
    out: list[str] = []
    done = 0
    pos = 0
    while True:
        match = _KEY.search(text, pos)
        if match is None:
            break
        if not is_credential_key(_unescaped(match.group(2) or match.group(4))):
            pos = match.end()
            continue
        end = _value_end(text, match.end())
        out.append(text[done : match.end()])
        out.append(f'"{REDACTED}"')
        done = pos = max(end, match.end())
    if not out:
        return raw
    out.append(text[done:])
    errors = "surrogatepass" if encoding.startswith("utf-16") else "strict"
    return "".join(out).encode(encoding, errors)


def _decoded(raw: bytes) -> tuple[str, str]:
    """``raw`` as text and the codec that gives its bytes back."""
    utf16 = _utf16(raw)  # checked first: ASCII in UTF-16 is valid UTF-8 too (with NULs)
    if utf16 is not None:
        even = raw[: len(raw) - len(raw) % 2]  # a truncated last byte is left out
        try:
            return even.decode(utf16, "surrogatepass"), utf16
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _utf16(raw: bytes) -> str | None:
    """The UTF-16 codec of bytes that look like UTF-16 text — NULs at every other byte,
    as ASCII-range characters have (most of them; some with a byte-order mark, which
    says the order and is kept when re-encoded) — so that its keys can be matched; else
    None (a mark before bytes without that pattern is just a byte sequence)."""
    mark = raw[:2]
    sample = raw[2:514] if mark in (b"\xff\xfe", b"\xfe\xff") else raw[:512]
    if len(sample) < 4:
        return None
    low, high = sample[1::2].count(0) / len(sample[1::2]), sample[0::2].count(0) / len(sample[0::2])
    if mark == b"\xff\xfe":
        return "utf-16" if low >= 0.3 else None
    if mark == b"\xfe\xff":
        return "utf-16" if high >= 0.3 else None
    if low >= 0.8:
        return "utf-16-le"
    if high >= 0.8:
        return "utf-16-be"
    return None


_WORDLIKE = re.compile(r"[A-Za-z0-9_\-]{3,100}")


def mentions_credential(text: str) -> bool:
    """Whether any word-like run of ``text`` (letters, digits, ``_``, ``-``) names a
    credential: text that cannot be parsed is judged by its words alone."""
    return any(is_credential_key(word) for word in _WORDLIKE.findall(text))
