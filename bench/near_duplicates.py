"""How well the near-duplicate level separates copies from other write-ups, on real articles.

For articles of the development corpus, makes copies with a share of words replaced (a light
copy-edit), then measures word-shingle Jaccard for: copies at each edit rate, different
write-ups of the same story, and unrelated articles; and the share of copies the pipeline's
LSH + verification finds. Prints numbers; chooses nothing by itself.
Usage: python bench/near_duplicates.py tests/data/giveme5w1h.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.fingerprint import jaccard, shingles  # noqa: E402
from pipeline.normalize import matching_text, words  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

FILLERS = ["reportedly", "officials", "on tuesday", "meanwhile", "the statement", "also", "further"]


def edit(tokens: list[str], rate: float, rng: random.Random) -> list[str]:
    out = list(tokens)
    for index in rng.sample(range(len(out)), int(len(out) * rate)):
        choice = rng.random()
        if choice < 0.6:
            out[index] = rng.choice(FILLERS)
        elif choice < 0.8:
            out[index] = ""
        else:
            out[index] = out[index] + " " + rng.choice(FILLERS)
    return " ".join(t for t in out if t).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus")
    parser.add_argument("--sample", type=int, default=150)
    args = parser.parse_args()
    settings = load_settings()
    size = settings.matching.shingle_size
    rng = random.Random(7)
    rows = [json.loads(line) for line in open(args.corpus, encoding="utf-8") if line.strip()]
    rng.shuffle(rows)
    rows = rows[: args.sample]
    tokens = [words(matching_text(r["text"])) for r in rows]
    sets = [shingles(t, size) for t in tokens]
    print(f"word {size}-gram Jaccard, {len(rows)} articles; near-duplicate threshold {settings.matching.dup_jaccard}")
    for rate in (0.0, 0.05, 0.1, 0.2, 0.3):
        scores = np.array([jaccard(s, shingles(edit(t, rate, rng), size)) for t, s in zip(tokens, sets)])
        found = np.mean(scores >= settings.matching.dup_jaccard)
        print(f"  copies, {rate:4.0%} of words edited: median {np.median(scores):.2f}  min {scores.min():.2f}  "
              f"above threshold {found:.0%}")
    same, other = [], []
    for (i, a), (j, b) in itertools.combinations(enumerate(rows), 2):
        (same if a["story"] == b["story"] else other).append(jaccard(sets[i], sets[j]))
    same_a, other_a = np.array(same), np.array(other)
    if not len(same_a) or not len(other_a):
        # A big corpus's sample of 150 can hold no two write-ups of one story.
        print(f"  (no {'same-story' if not len(same_a) else 'unrelated'} pairs among the {len(rows)} sampled "
              "articles: use a corpus with several articles per story, or a larger --sample)")
        return
    print(f"  same story, other write-up: median {np.median(same_a):.3f}  99th pct {np.quantile(same_a, 0.99):.3f}  "
          f"max {same_a.max():.3f}  above threshold {np.mean(same_a >= settings.matching.dup_jaccard):.2%}")
    print(f"  unrelated articles:         median {np.median(other_a):.3f}  max {other_a.max():.3f}")


if __name__ == "__main__":
    main()
