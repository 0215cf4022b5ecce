"""Grid search over matching settings on a labelled corpus; prints B-cubed F1 for each setting.

A tool for the person choosing thresholds, not a test: every threshold in config/default.toml
names the measurement that chose it (docs/quality.md), and this script reproduces them.
Usage: python bench/tune.py CORPUS.jsonl story_similarity=0.15,0.2,0.25 merge_similarity=0.3,0.4 [--batches 4]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.evaluate import evaluate_corpus  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", nargs="+", help="one or more labelled corpora (JSON Lines with 'story')")
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="matching settings to vary")
    parser.add_argument("--batches", type=int, default=1, help="also score as this many shuffled runs")
    parser.add_argument("--seeds", type=int, default=1, help="shuffle seeds to try with --batches")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    base = load_settings()
    keys = [item.split("=", 1)[0] for item in args.grid]
    values = [[parse_value(v) for v in item.split("=", 1)[1].split(",")] for item in args.grid]
    for combo in itertools.product(*values) if keys else [()]:
        matching = base.matching.model_copy(update=dict(zip(keys, combo)))
        settings = base.model_copy(update={"matching": matching})
        cells, scores = [], []
        for corpus in args.corpus:
            runs = [(1, 0)] + ([(args.batches, seed) for seed in range(1, args.seeds + 1)] if args.batches > 1 else [])
            for batches, seed in runs:
                result = evaluate_corpus(corpus, settings, batches=batches, seed=seed, worst=0)
                scores.append(result["bcubed_f1"])
                cells.append(
                    f"{batches}x: P {result['bcubed_precision']:.3f} R {result['bcubed_recall']:.3f} "
                    f"F1 {result['bcubed_f1']:.3f}"
                )
        label = " ".join(f"{k}={v}" for k, v in zip(keys, combo)) or "defaults"
        print(f"{label}\n    min F1 {min(scores):.3f}  mean F1 {sum(scores) / len(scores):.3f}  | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
