"""Matching text: one Unicode form, one kind of quote, dash and space, case folded, boilerplate out.

The text people read is never changed here; only the copy used for matching is.
"""

from __future__ import annotations

import itertools
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
# Faster spellings of the same steps (see unified() and display_text()).
_QUOTE_OF = {chr(code): replacement for code, replacement in _QUOTES.items()}
_QUOTE_CHARS = re.compile("[" + re.escape("".join(_QUOTE_OF)) + "]")
_OTHER_SPACE = re.compile(r"[^\S\n ]")
_TRAILING_SPACE = re.compile(r"[^\S\n]\n|[^\S\n]$")
# Non-ASCII characters that IGNORECASE matches with an ASCII letter (U+0130 is also the one
# character whose lower() is longer than itself); tests/test_normalize.py checks the list.
_CASE_TRAPS = re.compile("[\u0130\u0131\u017f\u212a]")
# A literal from every alternative of _CREDIT_LINE and _CALL_TO_ACTION_LINE, lower case; keep
# these in step with the patterns (a test checks lines matching each alternative are found).
_SUSPECT_ANYWHERE = (
    "photo", "image", "getty", "reuters", "copyright", "\u00a9", "rights reserved", "update",
    "newsletter", "sign up", "subscribe", "click here", "share this", "corrected",
)
# ... and from the alternatives anchored at the start of a line (after at most one space).
_SUSPECT_AT_LINE_START = tuple(
    prefix + key
    for key in (
        "published", "posted", "last modified", "read more", "related", "see also",
        "more on this", "recommended", "advertisement", "follow ",
    )
    for prefix in ("", " ")
)
_DATE_MARKER = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[^\W_]+(?:['.-][^\W_]+)*")
# The same pattern for ASCII text, where [^\W_] is [A-Za-z0-9]; a plain class is faster to test.
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+(?:['.-][A-Za-z0-9]+)*")


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
    # Each step is skipped when a cheap check shows it would change nothing (same output, less work):
    # an ASCII string holds no surrogates, and most texts have no carriage returns or blank runs.
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if _has_trailing_space(text):
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    if "\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def _has_trailing_space(text: str) -> bool:
    """True when a line of `text` (control characters already removed) ends in white space."""
    if text.isascii():
        # Without control characters, ASCII white space is a space, a tab or a newline.
        return " \n" in text or "\t\n" in text or text.endswith((" ", "\t"))
    return bool(_TRAILING_SPACE.search(text))


def _unify_quotes(match: re.Match[str]) -> str:
    return _QUOTE_OF[match.group()]


def unified(text: str) -> str:
    """`text` in NFKC with one form of quotes, dashes and spaces; letters and case unchanged."""
    text = unicodedata.normalize("NFKC", text)
    # The backtick is the only ASCII character _QUOTES maps. str.translate() looks up every
    # character of a long text; a character-class search finds the few that need replacing.
    if text.isascii():
        if "`" in text:
            text = text.replace("`", "'")
    elif _QUOTE_CHARS.search(text):
        text = _QUOTE_CHARS.sub(_unify_quotes, text)
    text = _INVISIBLE.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Replacing every single space with a space costs as much as the rest: only runs of two or
    # more, or other white space, need it.
    if "  " in text or _OTHER_SPACE.search(text):
        text = _SPACES.sub(" ", text)
    return text


def is_boilerplate(line: str) -> bool:
    """True for a line that is about the page (a photo credit, an update stamp, a newsletter ad)."""
    stripped = line.strip()
    if not stripped:
        return True
    count = len(stripped.split())
    if count <= _CALL_TO_ACTION_MAX_WORDS and _CALL_TO_ACTION_LINE.search(stripped):
        return True
    return count <= _CREDIT_MAX_WORDS and bool(_CREDIT_LINE.search(stripped))


def _suspect_lines(unified_text: str) -> set[int] | None:
    """Indexes of the lines of `unified_text` that may be boilerplate (None: check every line).

    The boilerplate patterns are case-insensitive alternations that Python's regex engine tries
    at every position of every line; that was a third of extraction. Every alternative contains
    one of the literals below, so a line without any of them cannot match: it is found with
    plain substring searches on the lower-cased text. This holds because, in a unified text, the
    only white space inside a line is a single space (so `\\s+` there is " "), and because
    IGNORECASE matches an ASCII letter only with itself in either case, except for the few
    non-ASCII characters in _CASE_TRAPS (texts holding one have every line checked).
    """
    if not unified_text.isascii() and _CASE_TRAPS.search(unified_text):
        return None
    low = unified_text.lower()
    starts: list[int] = []
    for key in _SUSPECT_ANYWHERE:
        at = low.find(key)
        while at != -1:
            starts.append(at)
            at = low.find(key, at + 1)
    suspects = {low.count("\n", 0, at) for at in starts}
    for index, line in enumerate(low.split("\n")):
        if line.startswith(_SUSPECT_AT_LINE_START):
            suspects.add(index)
    return suspects


def _kept_lines(unified_text: str) -> list[str]:
    suspects = _suspect_lines(unified_text)
    kept = []
    for index, line in enumerate(unified_text.split("\n")):
        if suspects is None or index in suspects:
            if not is_boilerplate(line):
                kept.append(line.strip())
        else:
            line = line.strip()
            if line:  # a blank line is boilerplate too
                kept.append(line)
    return kept


def story_lines(text: str) -> list[str]:
    """The lines of `text` (unified) that tell the story, boilerplate left out."""
    return _kept_lines(unified(text))


def matching_text(text: str) -> str:
    """The text used for matching: unified, boilerplate lines out, case folded, one space between words.

    Idempotent: matching_text(matching_text(t)) == matching_text(t).
    """
    folded = " ".join(story_lines(text)).casefold()
    if folded.isascii():
        # An ASCII text unified before folding has no white space but single spaces inside its
        # lines (the join adds single spaces between stripped, non-empty lines): unifying it
        # again and splitting on white space would change nothing.
        return folded
    # Case folding can itself produce characters that NFKC changes (rare, e.g. U+0130),
    # so unify once more to keep the function idempotent.
    return " ".join(unified(folded).casefold().split())


def words(norm_text: str) -> list[str]:
    """The word tokens of a matching text (letters and digits; inner apostrophes, dots, hyphens kept)."""
    if norm_text.isascii():
        return _ASCII_WORD.findall(norm_text)
    return _WORD.findall(norm_text)


def count_words(norm_text: str, limit: int) -> int:
    """len(words(norm_text)), but counting no further than `limit` (when that is all a caller needs)."""
    if limit <= 0:
        return 0
    return sum(1 for _ in itertools.islice(_WORD.finditer(norm_text), limit))


def date_marker(line: str) -> tuple[str, str] | None:
    """For a `date YYYY-MM-DD ...` first line: the date and what follows it on the line."""
    match = _DATE_MARKER.match(line)
    if not match:
        return None
    return match.group(1), match.group(2).strip()


# How pages join a headline and their site's name in <title>: "Headline - Site", "Site | Headline".
_TITLE_SEPARATORS = (" - ", " | ", " — ", " – ", " :: ", " · ", " « ", " » ")


def title_without_site(title: str | None, site: str | None) -> str | None:
    """`title` without a leading or trailing part that is the site's own name (`site`).

    Title words count several times over in matching (settings.title_boost), so a site name
    that every page of a site carries in its title made unrelated articles of one site look
    alike: "... - Como Educar Seus Filhos", "... | ノート100YEN.com". Only a part set off by a
    separator and equal to `site` (case and spacing aside) goes; a title that is nothing but
    the site's name stays as it is.
    """
    if not title or not site:
        return title
    name = " ".join(site.split()).casefold()
    folded = " ".join(title.split())
    lowered = folded.casefold()
    if len(lowered) != len(folded):  # casefold changed lengths ("ß" -> "ss"): positions would not line up
        return title
    for separator in _TITLE_SEPARATORS:
        if lowered.endswith(separator + name) and len(lowered) > len(separator + name):
            return folded[: -len(separator + name)].strip()
        if lowered.startswith(name + separator) and len(lowered) > len(name + separator):
            return folded[len(name + separator):].strip()
    return title
