"""Pairwise diagnostics on a labelled corpus: how separable same-story and different-story pairs are.

Prints, for the current settings, the distribution of the verification cosine (background
weights times corpus IDF) for same-story and different-story pairs, and the share of each that
the salient-term LSH makes candidates.
Usage: python bench/analyse_pairs.py tests/data/giveme5w1h.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.extract import build_article  # noqa: E402
from pipeline.fingerprint import cosine, fingerprint, weighted_vector  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.fingerprint import band_keys, lsh_bands  # noqa: E402
from pipeline.errors import BadInputError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus")
    args = parser.parse_args()
    settings = load_settings()
    rows = [json.loads(line) for line in open(args.corpus, encoding="utf-8") if line.strip()]
    items = []
    for row in rows:
        try:
            article = build_article(external_id=row["id"], text=row["text"], title=row.get("title"),
                                    published=(row.get("published") or "")[:10] or None, settings=settings.ingest)
        except BadInputError:
            continue
        items.append((row["story"], fingerprint(article, settings.matching)))
    bands, rows_per_band = lsh_bands(settings.matching.story_lsh_threshold, settings.matching.num_perm,
                                     tuple(settings.matching.story_lsh_weights))
    keys = [set(band_keys(fp.story_hashvalues, bands, rows_per_band)) for _, fp in items]
    frequencies: dict[str, int] = {}
    for _, fp in items:
        for term, _ in fp.terms:
            frequencies[term] = frequencies.get(term, 0) + 1
    vectors = [weighted_vector(dict(fp.terms), frequencies, len(items), settings.matching) for _, fp in items]
    same, diff, same_lsh, diff_lsh = [], [], 0, 0
    for (i, (gi, fi)), (j, (gj, fj)) in itertools.combinations(enumerate(items), 2):
        sim = cosine(vectors[i], vectors[j])
        hit = bool(keys[i] & keys[j])
        if gi == gj:
            same.append(sim)
            same_lsh += hit
        else:
            diff.append(sim)
            diff_lsh += hit
    same, diff = np.array(same), np.array(diff)
    print(f"LSH bands={bands} rows={rows_per_band}")
    print(f"same-story pairs {len(same)}: LSH candidate rate {same_lsh / len(same):.3f}; cosine quantiles "
          + " ".join(f"{q}:{np.quantile(same, q):.3f}" for q in (0.05, 0.1, 0.25, 0.5)))
    print(f"diff-story pairs {len(diff)}: LSH candidate rate {diff_lsh / len(diff):.4f}; cosine quantiles "
          + " ".join(f"{q}:{np.quantile(diff, q):.3f}" for q in (0.99, 0.999, 0.9999)))
    for threshold in (0.05, 0.07, 0.1, 0.15, 0.2):
        print(f"  cosine >= {threshold}: same {np.mean(same >= threshold):.3f}  diff {np.mean(diff >= threshold):.5f}")


if __name__ == "__main__":
    main()
