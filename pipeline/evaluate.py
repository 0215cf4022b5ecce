"""Scores of story clustering against labelled stories: B-cubed precision/recall/F1 and the adjusted Rand index."""

from __future__ import annotations

import gzip
import json
import random
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from math import comb
from pathlib import Path
from typing import Hashable, Iterator, Mapping, Sequence

from .errors import UsageError
from .report import plural
from .extract import canonical_url
from .settings import Settings


def bcubed(predicted: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering over the items of `gold`."""
    items = list(gold)
    if not items:
        return 0.0, 0.0, 0.0
    by_pred: dict[Hashable, set[str]] = defaultdict(set)
    by_gold: dict[Hashable, set[str]] = defaultdict(set)
    for item in items:
        by_pred[predicted[item]].add(item)
        by_gold[gold[item]].add(item)
    precision = recall = 0.0
    for item in items:
        cluster, label = by_pred[predicted[item]], by_gold[gold[item]]
        overlap = len(cluster & label)
        precision += overlap / len(cluster)
        recall += overlap / len(label)
    precision /= len(items)
    recall /= len(items)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def adjusted_rand_index(predicted: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> float:
    """The adjusted Rand index (1.0 identical clusterings, about 0.0 chance level)."""
    items = list(gold)
    n = len(items)
    if n < 2:
        return 1.0
    pairs = Counter((predicted[i], gold[i]) for i in items)
    sum_cells = sum(comb(c, 2) for c in pairs.values())
    sum_pred = sum(comb(c, 2) for c in Counter(predicted[i] for i in items).values())
    sum_gold = sum(comb(c, 2) for c in Counter(gold[i] for i in items).values())
    expected = sum_pred * sum_gold / comb(n, 2)
    maximum = (sum_pred + sum_gold) / 2
    if maximum == expected:
        return 1.0
    return (sum_cells - expected) / (maximum - expected)


def read_corpus(path: str | Path) -> list[dict]:
    """The records of a labelled JSON Lines corpus (.jsonl, or gzipped .jsonl.gz); each needs
    `text` and `story`, and gets `id` "line-N" when it has none.

    Raises:
        UsageError: the file is missing, a directory, unreadable, not UTF-8 or gzip, has a line
            that is not a JSON object with a 'story', or holds no records at all.
    """
    try:
        records = list(_corpus_records(Path(path)))
    except FileNotFoundError:
        raise UsageError(f"no such corpus: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory: give one JSON Lines file (.jsonl or .jsonl.gz)") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: a corpus is JSON Lines in UTF-8") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UsageError(f"{path} is not readable gzip data ({exc or 'truncated'})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not records:
        raise UsageError(f"{path} holds no records: a corpus is JSON Lines, one article with a 'story' label a line")
    return records


def _corpus_records(path: Path) -> Iterator[dict]:
    # A file name ending in .gz is read through gzip, as `ingest` reads .jsonl.gz.
    compressed = path.name.lower().endswith(".gz")
    with gzip.open(path, "rt", encoding="utf-8") if compressed else path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                # The decoder counts lines within the one line it was given; the file's line is `number`.
                raise UsageError(f"{path}:{number} is not JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number} is not a JSON object (one article a line)")
            if "story" not in record:
                raise UsageError(f"{path}:{number} has no 'story' field (the gold label)")
            record.setdefault("id", f"line-{number}")
            record["id"] = str(record["id"])
            yield record


def predicted_labels(records: Sequence[dict], db_path: Path) -> dict[str, Hashable]:
    """Each record's predicted story; a record not stored (rejected) is a story of its own."""
    from .store import open_store

    store = open_store(db_path)
    try:
        by_external = {r["external_id"]: r["story_id"] for r in store.db.query("SELECT external_id, story_id FROM articles")}
        by_url = {r["url"]: r["story_id"] for r in store.db.query("SELECT url, story_id FROM articles WHERE url IS NOT NULL")}
    finally:
        store.close()
    labels: dict[str, Hashable] = {}
    for record in records:
        story = by_external.get(record["id"])
        if story is None:
            story = by_url.get(canonical_url(record.get("url")))
        labels[record["id"]] = story if story is not None else f"unstored:{record['id']}"
    return labels


def evaluate_corpus(
    path: str | Path, settings: Settings, batches: int = 1, seed: int = 0, worst: int = 5
) -> dict:
    """Ingest a labelled corpus into a temporary database (as `batches` shuffled runs) and score it."""
    from .ingest import ingest

    records = read_corpus(path)
    with tempfile.TemporaryDirectory(prefix="newsdedup-eval-") as tmp:
        tmp_path = Path(tmp)
        order = list(records)
        if batches > 1:
            random.Random(seed).shuffle(order)
        parts = [order[i::batches] for i in range(batches)] if batches > 1 else [order]
        files = []
        for index, part in enumerate(parts):
            file = tmp_path / f"part-{index}.jsonl"
            with file.open("w", encoding="utf-8") as handle:
                for record in part:
                    handle.write(json.dumps({k: v for k, v in record.items() if k != "story"}, ensure_ascii=False) + "\n")
            files.append(file)
        db = tmp_path / "eval.db"
        started = time.perf_counter()
        for file in files:
            ingest([str(file)], settings, db)
        seconds = time.perf_counter() - started
        predicted = predicted_labels(records, db)
    gold = {r["id"]: r["story"] for r in records}
    precision, recall, f1 = bcubed(predicted, gold)
    # A record without a text is rejected by ingest and scored as a story of its own; it still needs a label here.
    titles = {r["id"]: str(r.get("title") or r.get("text") or r["id"])[:80] for r in records}
    return {
        "corpus": str(path),
        "articles": len(records),
        "batches": batches,
        "seed": seed,
        "bcubed_precision": round(precision, 4),
        "bcubed_recall": round(recall, 4),
        "bcubed_f1": round(f1, 4),
        "adjusted_rand_index": round(adjusted_rand_index(predicted, gold), 4),
        "predicted_stories": len(set(predicted.values())),
        # Records ingest refused (too short under the settings, say), each scored as a story of
        # its own: a low recall may be these, not the clustering (a QA pass could not tell).
        "rejected": sum(1 for story in predicted.values() if str(story).startswith("unstored:")),
        "gold_stories": len(set(gold.values())),
        "seconds": round(seconds, 2),
        "worst_merges": worst_merges(predicted, gold, titles, worst),
        "worst_splits": worst_splits(predicted, gold, titles, worst),
    }


def worst_merges(predicted: Mapping, gold: Mapping, titles: Mapping, limit: int) -> list[dict]:
    """Predicted stories that mix gold stories, most mixed first, with titles per gold story."""
    clusters: dict[Hashable, list[str]] = defaultdict(list)
    for item, story in predicted.items():
        clusters[story].append(item)
    mixed = []
    for story, items in clusters.items():
        labels = Counter(gold[i] for i in items)
        if len(labels) < 2:
            continue
        wrong = len(items) - labels.most_common(1)[0][1]
        groups = {str(label): [titles[i] for i in items if gold[i] == label][:3] for label, _ in labels.most_common()}
        mixed.append({"predicted_story": str(story), "size": len(items), "misplaced": wrong, "gold_stories": groups})
    mixed.sort(key=lambda m: (-m["misplaced"], -m["size"]))
    return mixed[:limit]


def worst_splits(predicted: Mapping, gold: Mapping, titles: Mapping, limit: int) -> list[dict]:
    """Gold stories spread over several predicted stories, most spread first."""
    by_gold: dict[Hashable, list[str]] = defaultdict(list)
    for item, label in gold.items():
        by_gold[label].append(item)
    split = []
    for label, items in by_gold.items():
        parts = Counter(predicted[i] for i in items)
        if len(parts) < 2:
            continue
        stray = len(items) - parts.most_common(1)[0][1]
        groups = {str(story): [titles[i] for i in items if predicted[i] == story][:3] for story, _ in parts.most_common()}
        split.append({"gold_story": str(label), "size": len(items), "stray": stray, "predicted_stories": groups})
    split.sort(key=lambda s: (-s["stray"], -s["size"]))
    return split[:limit]


def render(result: dict) -> str:
    """The evaluation result for people."""
    lines = [
        f"corpus      {result['corpus']} ({plural(result['articles'], 'article')}, "
        f"{plural(result['gold_stories'], 'gold story')}, {plural(result['batches'], 'run')})",
        f"B-cubed     precision {result['bcubed_precision']:.4f}  recall {result['bcubed_recall']:.4f}  "
        f"F1 {result['bcubed_f1']:.4f}",
        f"ARI         {result['adjusted_rand_index']:.4f}",
        f"stories     {result['predicted_stories']} predicted, {result['gold_stories']} gold",
        *(
            [f"rejected    {plural(result['rejected'], 'article')} not stored by ingest (see the settings, e.g. "
             "ingest.min_words), each scored as a story of its own"]
            if result.get("rejected") else []
        ),
        f"time        {result['seconds']:.2f}s ingesting",
    ]
    if result["worst_merges"]:
        lines.append("\nworst merges (one predicted story, several gold stories):")
        for merge in result["worst_merges"]:
            lines.append(f"  predicted {merge['predicted_story']}: {merge['size']} articles, {merge['misplaced']} misplaced")
            for label, titles in merge["gold_stories"].items():
                lines.append(f"    gold {label}: " + " | ".join(t[:60] for t in titles))
    if result["worst_splits"]:
        lines.append("\nworst splits (one gold story, several predicted stories):")
        for split in result["worst_splits"]:
            lines.append(f"  gold {split['gold_story']}: {split['size']} articles, {split['stray']} outside the main part")
            for story, titles in split["predicted_stories"].items():
                lines.append(f"    predicted {story}: " + " | ".join(t[:60] for t in titles))
    return "\n".join(lines)
