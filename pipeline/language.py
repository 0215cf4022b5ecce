"""Which language an article is written in, told by its most common words.

Story matching weighs a word by how rare it is in general use (pipeline/fingerprint.py), and
general use depends on the language: scored against English, the function words of a German or
Russian article ("und", "nicht", "что") are unknown words, weighted like rare names, and two
unrelated articles in one language share dozens of them. Measured on the 15 non-English pages
among the 181 evaluation pages (all unrelated): 6 wrongly joined pairs with English weights for
all (3 among 3 Russian articles), 3 with each page weighed in its own language.

The test is cheap enough to run on every article: the share of an article's first
`_SAMPLE` words that are among each language's 100 most common words (data/common-words.json,
from wordfreq). Function words make up a third to a half of running text in the languages
wordfreq covers; a language whose list covers a clearly larger share than English's is the
article's language. Texts the lists do not describe fall back on their script where only one
covered language writes it (Korean, Japanese, Chinese, Greek, ...); the rest (too short, no
such script) keep English, as before this module existed.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

DATA = Path(__file__).resolve().parent / "data" / "common-words.json"
DEFAULT = "en"
# Words looked at per article: the language is the same in the first 300 as in all of them.
_SAMPLE = 300
# A language is taken only when its common words are at least this share of the sample (English
# news: median 0.40, 5th percentile 0.32 on the development corpus; non-English pages 0.24-0.51
# in their own language) and at least _MARGIN above English's share. The margin keeps an
# English article whose words happen to be common in Dutch or Danish too ("in", "is", "over")
# English: the runner-up language of the 383 development articles reached 0.19, and English
# was first in all of them.
_MIN_SHARE = 0.15
_MARGIN = 0.05
_COMMON_WORDS = 100
# English found this clearly is taken without counting the other 41 lists (35 µs an article
# to 10): no other list covered more than 0.19 of an English development article.
_CLEARLY_DEFAULT = 0.30
# Scripts that only one covered language writes, for texts whose common words say too little:
# Korean glues its particles to the words (its common-word share was 0.05-0.07 on the two
# Korean evaluation pages), and Japanese and Chinese are written without spaces. Over half of
# the sample's letters in one of these scripts names the language; kana, which only Japanese
# writes (beside Han), from a tenth.
_KANA = re.compile(r"[\u3040-\u30ff]")
_SCRIPTS = (
    ("ko", re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("el", re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("bn", re.compile(r"[\u0980-\u09ff]")),
    ("ta", re.compile(r"[\u0b80-\u0bff]")),
)
_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=1)
def _common_words() -> dict[str, list[str]]:
    with open(DATA, encoding="utf-8") as data:
        return json.load(data)["languages"]


@functools.lru_cache(maxsize=1)
def _languages_of_word() -> dict[str, tuple[str, ...]]:
    """Each common word, mapped to the languages whose lists hold it."""
    found: dict[str, list[str]] = {}
    for language, common in _common_words().items():
        for word in common:
            found.setdefault(word, []).append(language)
    return {word: tuple(languages) for word, languages in found.items()}


@functools.lru_cache(maxsize=1)
def _default_words() -> frozenset[str]:
    return frozenset(_common_words()[DEFAULT])


def supported() -> list[str]:
    """The language codes detection can return (wordfreq's, ISO 639-1 where one exists)."""
    return sorted(_common_words())


def detect(tokens: Sequence[str]) -> str:
    """The language of a text from its casefolded word tokens (`normalize.words`); DEFAULT when unclear."""
    sample = tokens[:_SAMPLE]
    if not sample:
        return DEFAULT
    if sum(map(_default_words().__contains__, sample)) >= _CLEARLY_DEFAULT * len(sample):
        return DEFAULT
    languages = _languages_of_word()
    hits = Counter(itertools.chain.from_iterable(map(languages.get, sample, itertools.repeat(()))))
    if hits:
        best, count = max(hits.items(), key=lambda item: (item[1], item[0] == DEFAULT))
        share = count / len(sample)
        if best == DEFAULT and share >= _MIN_SHARE:
            return DEFAULT
        if share >= _MIN_SHARE and share >= hits.get(DEFAULT, 0) / len(sample) + _MARGIN:
            return best
    return _by_script(" ".join(sample))


def _by_script(text: str) -> str:
    """The one language that writes most of `text`'s letters, if their script has one; else DEFAULT."""
    if text.isascii():
        return DEFAULT
    letters = len(_LETTER.findall(text))
    if letters and len(_KANA.findall(text)) * 10 >= letters:
        return "ja"
    for language, script in _SCRIPTS:
        if letters and len(script.findall(text)) * 2 > letters:
            return language
    return DEFAULT


def build(top: int = _COMMON_WORDS) -> dict[str, object]:
    """data/common-words.json's content from the installed wordfreq (`python -m pipeline.language`)."""
    from importlib.metadata import version

    import wordfreq

    languages = sorted(wordfreq.available_languages(wordlist="best"))
    return {
        "source": f"wordfreq {version('wordfreq')}: top_n_list(language, {top}, wordlist='best')",
        "languages": {language: wordfreq.top_n_list(language, top, wordlist="best") for language in languages},
    }


def dumps(content: dict[str, object]) -> str:
    """The data file's text: a language a line, so a change to one list is a one-line diff."""
    lines = [f'"{language}": {json.dumps(words, ensure_ascii=False)}' for language, words in content["languages"].items()]
    return '{"source": %s,\n"languages": {\n%s\n}}\n' % (json.dumps(content["source"]), ",\n".join(lines))


if __name__ == "__main__":
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(dumps(build()), encoding="utf-8")
    print(f"wrote {DATA}")
