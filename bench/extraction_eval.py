"""Extraction quality: token precision, recall and F1 of the text newsdedup stores, against human bodies.

Ingests every page of the evaluation set (tests/data/html/html/<id>.html.gz) through the
pipeline's own ingest (read, extract, normalise, fingerprint, store) into a temporary story
database, then compares each stored `articles.text` with the `articleBody` people wrote out
in ground-truth.json. A page that is rejected scores 0 and is listed with its reason.

Tokens are lower-cased runs of word characters; scores are over bags of tokens (a token
found twice in the truth must be found twice to count twice), as in the benchmark the pages
come from (scrapinghub/article-extraction-benchmark).

    python bench/extraction_eval.py                 # the pipeline as configured
    python bench/extraction_eval.py --baseline      # also plain trafilatura.extract() for comparison
    python bench/extraction_eval.py --json
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.ingest import ingest  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.store import open_store  # noqa: E402

DEFAULT_DIR = ROOT / "tests" / "data" / "html"
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> Counter:
    return Counter(_TOKEN.findall(text.lower()))


def scores(found: str, truth: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of the bag of tokens in `found` against `truth`."""
    got, want = tokens(found), tokens(truth)
    overlap = sum((got & want).values())
    precision = overlap / sum(got.values()) if got else 0.0
    recall = overlap / sum(want.values()) if want else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def stored_texts(html_dir: Path, config: str | None) -> tuple[dict[str, str], dict[str, str], float]:
    """Texts stored per page id, reject reasons per page id, and the ingest's wall time."""
    settings = load_settings(config)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "eval.db"
        started = time.perf_counter()
        ingest([str(html_dir / "html")], settings, db)
        seconds = time.perf_counter() - started
        store = open_store(db)
        try:
            stored = {
                row["external_id"].split(".")[0]: row["text"]
                for row in store.db.query("SELECT external_id, text FROM articles")
            }
            rejected = {
                row["ref"].split(".")[0]: f"{row['stage']}: {row['reason']}"
                for row in store.db.query("SELECT ref, stage, reason FROM rejects")
            }
        finally:
            store.close()
    return stored, rejected, seconds


def baseline_texts(html_dir: Path, page_ids: list[str]) -> dict[str, str]:
    import trafilatura

    out = {}
    for page_id in page_ids:
        html = gzip.decompress((html_dir / "html" / f"{page_id}.html.gz").read_bytes())
        out[page_id] = trafilatura.extract(html) or ""
    return out


def summary(per_page: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    columns = list(zip(*per_page.values())) if per_page else [(), (), ()]
    out: dict[str, float] = {}
    for name, values in zip(("precision", "recall", "f1"), columns):
        out[f"mean_{name}"] = round(statistics.fmean(values), 4) if values else 0.0
        out[f"median_{name}"] = round(statistics.median(values), 4) if values else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html-dir", type=Path, default=DEFAULT_DIR, help="holds html/ and ground-truth.json")
    parser.add_argument("--config", default=None, help="a TOML file overriding config/default.toml")
    parser.add_argument("--baseline", action="store_true", help="also score plain trafilatura.extract()")
    parser.add_argument("--worst", type=int, default=8, help="list this many lowest-F1 pages")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    truth = json.loads((args.html_dir / "ground-truth.json").read_text(encoding="utf-8"))
    stored, rejected, seconds = stored_texts(args.html_dir, args.config)
    per_page = {page_id: scores(stored.get(page_id, ""), item["articleBody"]) for page_id, item in truth.items()}
    unaccounted = sorted(set(truth) - set(stored) - set(rejected))
    result: dict[str, object] = {
        "pages": len(truth),
        "stored": sum(1 for page_id in truth if page_id in stored),
        "rejected": sum(1 for page_id in truth if page_id in rejected and page_id not in stored),
        "unaccounted": unaccounted,
        "seconds": round(seconds, 1),
        "pipeline": summary(per_page),
        "pipeline_stored_only": summary({k: v for k, v in per_page.items() if k in stored}),
        "rejects": {page_id: rejected[page_id] for page_id in sorted(rejected) if page_id in truth},
        "worst": sorted(
            ({"page": k, "f1": round(v[2], 3), "precision": round(v[0], 3), "recall": round(v[1], 3),
              "url": truth[k]["url"]} for k, v in per_page.items()),
            key=lambda row: row["f1"],
        )[: args.worst],
    }
    if args.baseline:
        base = baseline_texts(args.html_dir, list(truth))
        result["trafilatura_extract"] = summary(
            {page_id: scores(base[page_id], item["articleBody"]) for page_id, item in truth.items()}
        )
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0 if not unaccounted else 1
    print(f"pages {result['pages']}: stored {result['stored']}, rejected {result['rejected']}, "
          f"unaccounted {len(unaccounted)}  ({seconds:.1f}s through the pipeline)")
    for label in ("pipeline", "pipeline_stored_only", "trafilatura_extract"):
        if label in result:
            s = result[label]
            print(f"{label:<22} mean P {s['mean_precision']:.3f} R {s['mean_recall']:.3f} F1 {s['mean_f1']:.3f}   "
                  f"median P {s['median_precision']:.3f} R {s['median_recall']:.3f} F1 {s['median_f1']:.3f}")
    for page_id, reason in result["rejects"].items():
        print(f"  rejected {page_id[:12]}  {reason}")
    print("lowest F1:")
    for row in result["worst"]:
        print(f"  {row['f1']:.3f} (P {row['precision']:.3f} R {row['recall']:.3f})  {row['page'][:12]}  {row['url']}")
    return 0 if not unaccounted else 1


if __name__ == "__main__":
    sys.exit(main())
