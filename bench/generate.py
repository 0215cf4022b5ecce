"""Seeded generator of news-like corpora: story families built from sentences of real articles.

Each family starts from the sentences of one real article (tests/data/giveme5w1h.jsonl,
Apache-2.0, see tests/data/LICENSE-giveme5w1h) passed through a family-specific word
substitution, so unrelated families share sentence structure and common words (as real news
does) but not their names and facts. A family's members are an original report, reprints
(the same text from another outlet), light edits (5-10% of words changed, a sentence dropped,
boilerplate lines added) and follow-ups (a different selection of the family's sentences plus
new ones), dated within days of each other. The same seed gives the same corpus, byte for byte.

    python bench/generate.py --articles 20000 --seed 1 --out bench/corpus-20k.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCE_SOURCE = ROOT / "tests" / "data" / "giveme5w1h.jsonl"
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_WORD = re.compile(r"[A-Za-z]{3,}")
_NUMBER = re.compile(r"\d+")
# Share of a family's distinct words replaced by other words: enough that two families built
# from the same source article are different stories, few enough that text still reads as news.
_SUBSTITUTION_RATE = 0.35
# Names and rare words (capitalised and not an everyday word, or rarer than 3 in a million words)
# are what tell one story from another: a family replaces nearly all of them, so two families
# built from one source share its sentence structure and everyday words, not its people, places
# and facts. (Version 1 of the generator replaced them at the common-word rate, so families from
# one source shared two thirds of their names and were, by any reading, one story.)
_NAME_SUBSTITUTION_RATE = 0.95
_RARE_ZIPF = 3.5
# Bumped whenever the generator's output changes, so cached corpora of an older one are not reused.
GENERATOR_VERSION = 2
# Sentences a family has to draw its reports from (a report uses 18-36 of them: ~550 words).
_FAMILY_SENTENCES = 40
_FIRST_DAY = date(2024, 1, 1)
_OUTLETS = 300
_BOILERPLATE = (
    "Sign up for our newsletter to get the day's top stories.",
    "Photo: Reuters",
    "Read more: latest headlines",
    "Follow us on social media for updates.",
    "Copyright 2024. All rights reserved.",
)
# Member kinds and their shares after a family's first (original) report.
_KINDS = (("reprint", 0.25), ("edit", 0.35), ("followup", 0.40))


@dataclass(frozen=True)
class Source:
    title: str
    sentences: tuple[str, ...]


def load_sources(path: Path = SENTENCE_SOURCE) -> list[Source]:
    """The real articles whose sentences families are built from (header lines dropped)."""
    sources = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            lines = [part.strip() for part in record["text"].split("\n") if len(part.split()) >= 6]
            sentences = [s for part in lines for s in _SENTENCE_SPLIT.split(part) if len(s.split()) >= 5]
            if len(sentences) >= 8:
                sources.append(Source(record.get("title") or sentences[0], tuple(sentences)))
    return sources


def vocabulary() -> list[str]:
    """Replacement words: common English words of four letters or more (wordfreq, deterministic)."""
    import wordfreq

    return [w for w in wordfreq.top_n_list("en", 40_000) if w.isalpha() and len(w) >= 4][5_000:35_000]


@functools.lru_cache(maxsize=None)
def _zipf(word: str) -> float:
    import wordfreq

    return wordfreq.zipf_frequency(word, "en")


class Family:
    """One story: its own word substitution over a source article's sentences."""

    def __init__(self, family_id: int, sources: list[Source], words: list[str], rng: random.Random) -> None:
        self.family_id = family_id
        self.rng = rng
        self.words = words
        self.mapping: dict[str, str] = {}
        source = rng.choice(sources)
        sentences = list(source.sentences)
        # Short sources borrow a second article's sentences, so reports run to news length.
        while len(sentences) < _FAMILY_SENTENCES:
            sentences.extend(rng.choice(sources).sentences)
        self.title = self.rewrite(source.title)
        self.raw = sentences
        self.rewritten: dict[int, str] = {}
        self.day = rng.randrange(0, 60)

    def sentences(self, indexes: list[int]) -> list[str]:
        """The family's versions of its source sentences at `indexes` (rewritten once, on first use)."""
        for index in indexes:
            if index not in self.rewritten:
                self.rewritten[index] = self.rewrite(self.raw[index])
        return [self.rewritten[index] for index in indexes]

    def rewrite(self, sentence: str) -> str:
        def swap(match: re.Match) -> str:
            word = match.group(0)
            key = word.lower()
            if key not in self.mapping:
                named = _zipf(key) < _RARE_ZIPF or (word[0].isupper() and (match.start() > 0 or _zipf(key) < 4.5))
                if named:
                    replace = self.rng.random() < _NAME_SUBSTITUTION_RATE
                else:
                    # Three-letter words are kept unless they are names ("LAX", "GOP").
                    replace = len(key) > 3 and self.rng.random() < _SUBSTITUTION_RATE
                self.mapping[key] = self.rng.choice(self.words) if replace else key
            new = self.mapping[key]
            return new.capitalize() if word[0].isupper() else new

        sentence = _WORD.sub(swap, sentence)
        return _NUMBER.sub(lambda m: str(self.rng.randrange(2, 999)), sentence)


def edited(text: str, rng: random.Random, words: list[str]) -> str:
    """A light edit: 5-10% of words replaced or dropped, maybe a sentence less, a boilerplate line more."""
    lines = text.split("\n")
    if len(lines) > 6 and rng.random() < 0.5:
        del lines[rng.randrange(1, len(lines))]
    rate = rng.uniform(0.05, 0.10)
    out = []
    for line in lines:
        tokens = []
        for token in line.split(" "):
            roll = rng.random()
            if roll < rate / 2:
                continue
            tokens.append(rng.choice(words) if roll < rate else token)
        out.append(" ".join(tokens))
    if rng.random() < 0.6:
        out.insert(rng.randrange(1, len(out) + 1), rng.choice(_BOILERPLATE))
    return "\n".join(out)


def family_sizes(total: int, rng: random.Random) -> list[int]:
    """Story sizes summing to `total`: many single reports, a long tail of big stories."""
    sizes = []
    while sum(sizes) < total:
        size = 1
        while rng.random() < 0.62 and size < 60:
            size += 1
        sizes.append(min(size, total - sum(sizes)))
    return sizes


def corpus(articles: int, seed: int) -> list[dict]:
    """`articles` labelled news-like records (fields of the JSON Lines input plus `story`, `kind`)."""
    rng = random.Random(seed)
    sources = load_sources()
    words = vocabulary()
    records: list[dict] = []
    for family_id, size in enumerate(family_sizes(articles, rng)):
        family = Family(family_id, sources, words, random.Random(rng.getrandbits(64)))
        members: list[dict] = []
        for member in range(size):
            kind = "original" if member == 0 else rng.choices(*zip(*_KINDS))[0]
            base = rng.choice(members) if members else None
            if kind == "original" or base is None:
                count = min(len(family.raw), rng.randrange(18, 36))
                text = "\n".join(family.sentences(list(range(count))))
                title, day = family.title, family.day
            elif kind == "reprint":
                text, title, day = base["text"], base["title"], base["day"] + rng.randrange(0, 2)
            elif kind == "edit":
                text, title, day = edited(base["text"], rng, words), base["title"], base["day"] + rng.randrange(0, 2)
            else:
                picked = family.sentences(rng.sample(range(len(family.raw)), k=rng.randrange(14, 28)))
                other = Family(-1, sources, words, random.Random(rng.getrandbits(64)))
                fresh = other.sentences(rng.sample(range(len(other.raw)), k=rng.randrange(3, 8)))
                text = "\n".join(picked + fresh)
                title, day = f"{family.title}: {rng.choice(words)} {rng.choice(words)}", family.day + rng.randrange(0, 6)
            outlet = f"outlet{rng.randrange(_OUTLETS):03d}.example"
            number = len(records) + len(members)
            members.append(
                {
                    "id": f"bench-{seed}-{number:07d}",
                    "title": title,
                    "text": text,
                    "url": f"https://{outlet}/news/{family_id}-{member}-{rng.getrandbits(32):08x}",
                    "source": outlet,
                    "day": day,
                    "story": f"family-{family_id}",
                    "kind": kind,
                }
            )
        records.extend(members)
    # Arrival order is roughly by date, as a feed delivers it, with some shuffling.
    rng.shuffle(records)
    records.sort(key=lambda r: r["day"] + rng.random() * 3)
    for record in records:
        record["published"] = (_FIRST_DAY + timedelta(days=record.pop("day"))).isoformat()
    return records


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_text_files(records: list[dict], directory: Path) -> Path:
    """The same records as .txt files (the title on the first line, then the text)."""
    directory.mkdir(parents=True, exist_ok=True)
    for number, record in enumerate(records):
        (directory / f"{number:07d}.txt").write_text(f"{record['title']}\n{record['text']}\n", encoding="utf-8")
    return directory


def write_html_pages(records: list[dict], directory: Path) -> Path:
    """The same records as news web pages with navigation, related links and a footer around them."""
    from html import escape

    directory.mkdir(parents=True, exist_ok=True)
    for number, record in enumerate(records):
        paragraphs = "\n".join(f"<p>{escape(line)}</p>" for line in record["text"].split("\n"))
        related = "".join(f'<li><a href="/n/{number}-{i}">Related story {i}</a></li>' for i in range(8))
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(record["title"])}</title>'
            f'<meta property="og:url" content="{escape(record["url"])}">'
            f'<meta property="article:published_time" content="{record["published"]}">'
            f'<meta property="og:site_name" content="{record["source"]}"></head><body>'
            f'<nav><a href="/">Home</a> <a href="/world">World</a> <a href="/sport">Sport</a></nav>'
            f'<article><h1>{escape(record["title"])}</h1><time datetime="{record["published"]}">'
            f'{record["published"]}</time>{paragraphs}</article>'
            f"<aside><h2>Related</h2><ul>{related}</ul></aside>"
            f"<footer><p>Copyright {record['source']}. All rights reserved.</p></footer></body></html>"
        )
        (directory / f"{number:07d}.html").write_text(page, encoding="utf-8")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="a .jsonl file")
    args = parser.parse_args()
    records = corpus(args.articles, args.seed)
    write_jsonl(records, args.out)
    words = sum(len(r["text"].split()) for r in records)
    families = len({r["story"] for r in records})
    print(f"{len(records):,} articles, {families:,} stories, {words / len(records):.0f} words each -> {args.out}")


if __name__ == "__main__":
    main()
