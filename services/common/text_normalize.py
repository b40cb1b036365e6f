"""Text normalization before any guardrail check, and the views detectors match against.

Two different things live here, and the difference matters:

* ``normalize`` changes the text that goes on (to retrieval, the model, the audit trail):
  Unicode NFKC (full-width and ligature forms become plain letters), zero-width, bidi-override
  and control characters removed (newline and tab kept), and a length limit. An attacker who
  hides "ignore" as "ig\u200bnore" or wraps it in a right-to-left override loses the trick here.
* ``skeleton`` and ``decoded_payloads`` are for matching only, never shown or forwarded:
  the skeleton folds look-alike letters (Cyrillic "о", Greek "ο" → "o"), leetspeak ("1gn0re"),
  accents, and s p a c e d or d.o.t.t.e.d letters into a lowercase ASCII-ish form; decoded
  payloads are base64 / hex / percent-encoded / rot13 blobs inside the text, decoded so the
  detectors can scan what the model would be asked to decode.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

# Zero-width and invisible formatting characters, bidi embeddings/overrides/isolates, the BOM,
# soft hyphen, word joiner, Mongolian vowel separator, and the Unicode "tag" block (used to
# smuggle invisible ASCII into prompts).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_KEEP_CONTROLS = {"\n", "\t"}
_DROPPED_CATEGORIES = ("Cc", "Cf", "Co", "Cs")


@dataclass(frozen=True)
class Normalized:
    """The normalized text and what normalization did to it (for the audit trail)."""

    text: str
    original_chars: int
    removed_chars: int
    truncated: bool
    changed: bool


def _dropped(ch: str) -> bool:
    return ch not in _KEEP_CONTROLS and unicodedata.category(ch) in _DROPPED_CATEGORIES


def strip_invisible(text: str) -> tuple[str, int]:
    """(text without invisible/control characters, how many were removed).

    Each *distinct* character is judged once (a text has a few dozen), not every character:
    this runs on every question several times (normalize, skeleton, the rules' views), and a
    per-character Python loop was most of its cost on long texts."""
    cleaned = _INVISIBLE.sub("", text)
    dropped = {ord(ch): None for ch in set(cleaned) if _dropped(ch)}
    if dropped:
        cleaned = cleaned.translate(dropped)
    cleaned = cleaned.replace("\r\n", "\n")
    return cleaned, len(text) - len(cleaned)


def normalize(text: str, max_chars: int | None = None) -> Normalized:
    """NFKC, invisible characters stripped, then cut to ``max_chars`` (when given).

    Stripping happens after NFKC because NFKC can itself produce characters (e.g. from
    compatibility forms) that must then be checked again.
    """
    nfkc = unicodedata.normalize("NFKC", text)
    cleaned, removed = strip_invisible(nfkc)
    truncated = max_chars is not None and len(cleaned) > max_chars
    if truncated:
        cleaned = cleaned[:max_chars]
    return Normalized(text=cleaned, original_chars=len(text), removed_chars=removed,
                      truncated=truncated, changed=cleaned != text)


# --- skeleton (matching only) -------------------------------------------------------------------

# Look-alikes that NFKC leaves alone: Cyrillic, Greek, Armenian and a few symbols that render
# like Latin letters. Lowercase targets: the skeleton is lowercase.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ɡ": "g", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "г": "r", "п": "n", "ь": "b",
    "з": "3", "ч": "4", "ո": "n", "ս": "u", "օ": "o", "ց": "g", "յ": "j",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "μ": "u", "ϲ": "c",
    # Latin extensions and symbols
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ɩ": "i", "ɑ": "a",
    "ʀ": "r", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꞯ": "q", "ꜱ": "s",
    "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ß": "ss", "æ": "ae",
    "œ": "oe", "∂": "d", "€": "e", "£": "l", "¥": "y", "©": "c", "®": "r",
}
# Leetspeak applies only inside words that also contain letters, so "1999" or "v2.0" stay.
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
         "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"}
# A whole run of word characters that holds one of ``_LEET``'s keys: the only runs ``_unleet``
# can change, so the regex engine passes over the others instead of a Python call per word.
# Anchored at a run's start and lazy up to that key, each run is scanned once (no backtracking
# from every position of a long run that has none).
_LEET_WORD = re.compile(r"(?<![\w@$!|+])[\w@$!|+]*?[013457-9@$!|+][\w@$!|+]*")
# A number and its ordinal, plural or unit ("10th", "21st", "1990s", "5pm", "16gb", "100km"):
# read as a number, not as leetspeak ("ioth", "igggs" before), which changed ordinary questions'
# readable form and so their vectors. Narrow on purpose, since leetspeak writes words the same
# way: an ordinal only with its own digit ("4nd" is "and", "3nd" "end"), a plural after two
# digits ("1s" is "is"), no one-letter units ("45k" is "ask", "734m" "team", "74x" "tax").
_NUMBER_WITH_SUFFIX = re.compile(
    r"\d*(?:1st|2nd|3rd)|\d+th|\d{2,}s|\d{1,2}(?:am|pm)"
    r"|\d+(?:kb|mb|gb|tb|km|kg|cm|mm|ml|hz|khz|mhz|ghz|min|ms)")
# Single letters separated by one separator (space, dot, dash, underscore, asterisk...) at
# least four times in a row: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e".
_SPACED = re.compile(r"(?<![\w])(?:[a-z0-9@$][ .\-_*/\\|,:~]{1,2}){3,}[a-z0-9@$](?![\w])")
_SEPARATORS = re.compile(r"[ .\-_*/\\|,:~]")
_WHITESPACE = re.compile(r"\s+")


def spaced_runs(text: str, min_letters: int = 6) -> list[str]:
    """Letter-by-letter spelled runs ("i g n o r e"), collapsed, of at least ``min_letters``
    letters: spelling a phrase out is a common way to slip it past word-based filters."""
    lowered = text.lower()
    runs = (_SEPARATORS.sub("", m.group(0)) for m in _SPACED.finditer(lowered))
    return [run for run in runs if len(run) >= min_letters]


def _fold_char(ch: str) -> str:
    mapped = _HOMOGLYPHS.get(ch)
    if mapped is not None:
        return mapped
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return base or ch


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    word = token.rstrip("!|+")  # "hello!" is punctuation, "h3ll0" is leetspeak
    if not any(c.isalpha() for c in word) or _NUMBER_WITH_SUFFIX.fullmatch(word):
        return token
    return "".join(_LEET.get(c, c) for c in word) + token[len(word):]


def skeleton(text: str) -> str:
    """A lowercase, folded form for matching: homoglyphs, accents, leetspeak and
    letter-by-letter spacing undone, whitespace collapsed. Never shown or forwarded."""
    lowered = unicodedata.normalize("NFKC", text).lower()
    # ASCII folds to itself, so only the distinct other characters are looked up.
    folded = lowered.translate({ord(ch): _fold_char(ch) for ch in set(lowered)
                                if not ch.isascii()})
    folded, _ = strip_invisible(folded)
    collapsed = _SPACED.sub(lambda m: _SEPARATORS.sub("", m.group(0)), folded)
    unleeted = _LEET_WORD.sub(_unleet, collapsed)
    return _WHITESPACE.sub(" ", unleeted).strip()


# --- decoded payloads (matching only) -----------------------------------------------------------

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
_PERCENT = re.compile(r"(?:%[0-9A-Fa-f]{2}){3,}")
_ROT13_HINT = re.compile(r"\brot[- ]?13\b|\bcaesar\b", re.IGNORECASE)
MAX_PAYLOADS = 8
MIN_PRINTABLE = 0.85


@dataclass(frozen=True)
class Payload:
    kind: str  # base64 | hex | url | rot13
    text: str


def _printable(decoded: bytes) -> str | None:
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    letters = sum(1 for ch in text if ch.isalpha())
    if good / len(text) < MIN_PRINTABLE or letters < len(text) * 0.4:
        return None
    return text


def _b64(blob: str) -> str | None:
    padded = blob + "=" * (-len(blob) % 4)
    try:
        if "-" in blob or "_" in blob:
            decoded = base64.urlsafe_b64decode(padded)
        else:
            decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable(decoded)


def _hex(blob: str) -> str | None:
    try:
        return _printable(bytes.fromhex(re.sub(r"[ :]", "", blob)))
    except ValueError:
        return None


def decoded_payloads(text: str) -> list[Payload]:
    """Readable text hidden in encodings inside ``text``. Only blobs that decode to mostly
    printable, letter-bearing UTF-8 count, so ids and hashes do not produce noise. rot13 is
    tried on the whole text only when the text mentions it (every text "decodes" as rot13)."""
    found: list[Payload] = []
    seen: set[str] = set()

    def add(kind: str, decoded: str | None) -> None:
        if decoded and decoded not in seen and len(found) < MAX_PAYLOADS:
            seen.add(decoded)
            found.append(Payload(kind, decoded))

    for match in _BASE64.finditer(text):
        blob = match.group(0)
        if blob.isalpha() and (blob.islower() or blob.isupper()):
            continue  # a plain long word, not base64
        add("base64", _b64(blob))
    for match in _HEX.finditer(text):
        add("hex", _hex(match.group(0)))
    for match in _PERCENT.finditer(text):
        add("url", unquote(match.group(0)))
    if _ROT13_HINT.search(text):
        add("rot13", codecs.decode(text, "rot_13"))
    # One level of nesting (base64 inside base64, url-encoded base64) is common in attacks.
    for payload in list(found):
        for inner in _BASE64.finditer(payload.text):
            add(f"{payload.kind}+base64", _b64(inner.group(0)))
    return found


def views(text: str) -> list[tuple[str, str]]:
    """Every form a detector should scan: (name, text) for the text itself, its skeleton and
    each decoded payload (and the payload's skeleton)."""
    out = [("text", text)]
    skel = skeleton(text)
    if skel != text:
        out.append(("skeleton", skel))
    for payload in decoded_payloads(text):
        out.append((payload.kind, payload.text))
        payload_skel = skeleton(payload.text)
        if payload_skel != payload.text:
            out.append((f"{payload.kind}:skeleton", payload_skel))
    return out
