"""Matching text: one Unicode form, one kind of quote, dash and space, case folded, boilerplate out.

The text people read is never changed here; only the copy used for matching is.
"""

from __future__ import annotations

import re
import unicodedata

# After NFKC these still come in several forms; matching should not care which an outlet used.
_QUOTES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
        "`": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"', "\u2039": "'", "\u203a": "'",
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
        "\u2212": "-", "\ufe58": "-", "\ufe63": "-", "\uff0d": "-",
    }
)
# Control characters (but not newline and tab) and zero-width characters carry no words.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{2,}")

# Lines that are about the page, not the story. Each pattern only applies to short lines so
# that a real paragraph quoting one of these phrases stays: captions and credits run long
# (the seeds have a 35-word caption), calls to action are short.
_CREDIT_LINE = re.compile(
    r"""(
        photo\s*credit | \(photo\b | \bphoto:\s | photograph:\s | image\s*(credit|source)
        | getty\s*images | afp\s*photo | \bap\s*photo\b | /\s*reuters\s*$
        | copyright | \u00a9 | all\s+rights\s+reserved
        )""",
    re.IGNORECASE | re.VERBOSE,
)
_CREDIT_MAX_WORDS = 60
_CALL_TO_ACTION_LINE = re.compile(
    r"""(
        ^\s*updated?\b[^a-z]{0,12}\d{1,2}[:.]\d{2} | ^\s*updated?\s*: | \|\s*updated?\s*:
        | ^\s*(published|posted|last\s+modified)\s*:?\s*(on\s+)?\d
        | newsletter | sign\s+up\s+(for|to|here|now) | ^\s*subscribe\b | subscribe\s+(to|now|for|today)
        | ^\s*(read\s+more|related|see\s+also|more\s+on\s+this|recommended|advertisement)\b
        | ^\s*follow\s+(us|@) | click\s+here | share\s+this\s+(article|story)
        | this\s+(article|story)\s+(was|has\s+been)\s+(updated|corrected)
        | ^\s*\(?reuters\)?\s*$
        )""",
    re.IGNORECASE | re.VERBOSE,
)
_CALL_TO_ACTION_MAX_WORDS = 20
_DATE_MARKER = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[^\W_]+(?:['.-][^\W_]+)*")


def without_lone_surrogates(value: object) -> object:
    """`value` (a string, or parsed JSON) with unpaired UTF-16 surrogates replaced by U+FFFD.

    JSON allows "\\ud800" on its own and Python keeps it, but it is not a character: it
    cannot be encoded as UTF-8, so SQLite and hashing would fail on it.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value


def display_text(text: str) -> str:
    """The text as published, for people: quotes, dashes and letters untouched; only control
    characters, stray surrogates and mixed line endings cleaned, and blank runs collapsed."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def unified(text: str) -> str:
    """`text` in NFKC with one form of quotes, dashes and spaces; letters and case unchanged."""
    text = unicodedata.normalize("NFKC", text)
    # The backtick is the only ASCII character _QUOTES maps; translate() is slow on long texts.
    text = text.replace("`", "'") if text.isascii() else text.translate(_QUOTES)
    text = _INVISIBLE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _SPACES.sub(" ", text)


def is_boilerplate(line: str) -> bool:
    """True for a line that is about the page (a photo credit, an update stamp, a newsletter ad)."""
    stripped = line.strip()
    if not stripped:
        return True
    count = len(stripped.split())
    if count <= _CALL_TO_ACTION_MAX_WORDS and _CALL_TO_ACTION_LINE.search(stripped):
        return True
    return count <= _CREDIT_MAX_WORDS and bool(_CREDIT_LINE.search(stripped))


def story_lines(text: str) -> list[str]:
    """The lines of `text` (unified) that tell the story, boilerplate left out."""
    return [line.strip() for line in unified(text).split("\n") if not is_boilerplate(line)]


def matching_text(text: str) -> str:
    """The text used for matching: unified, boilerplate lines out, case folded, one space between words.

    Idempotent: matching_text(matching_text(t)) == matching_text(t).
    """
    folded = " ".join(story_lines(text)).casefold()
    # Case folding can itself produce characters that NFKC changes (rare, e.g. U+0130),
    # so unify once more to keep the function idempotent.
    return " ".join(unified(folded).casefold().split())


def words(norm_text: str) -> list[str]:
    """The word tokens of a matching text (letters and digits; inner apostrophes, dots, hyphens kept)."""
    return _WORD.findall(norm_text)


def date_marker(line: str) -> tuple[str, str] | None:
    """For a `date YYYY-MM-DD ...` first line: the date and what follows it on the line."""
    match = _DATE_MARKER.match(line)
    if not match:
        return None
    return match.group(1), match.group(2).strip()
