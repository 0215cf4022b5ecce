"""The benchmark behind `make bench`: per-stage throughput and peak memory, against a plain baseline.

Every measurement runs in a child process of its own (`run.py measure NAME ...`), so each
peak memory figure (ru_maxrss) belongs to that measurement alone and no warm cache leaks from
one to the next. The parent prints one table and writes bench/results.json.

    python bench/run.py                # 20,000 and 100,000 articles (see docs/performance.md for how long)
    python bench/run.py --large 25000  # a smaller large corpus
    python bench/run.py --quick        # 2,000 and 5,000 articles, to try the harness
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
CACHE = HERE / ".cache"
# The incremental test: this many new articles into a database holding the big corpus.
INCREMENT = 1_000
# ... measured this many times into each database, alternating.
INCREMENT_PAIRS = 5
HTML_PAGES = 1_600
# Text input is measured on the small corpus's first articles written as files (one file each).
TEXT_FILES = 5_000


# -- measurements (each runs in its own child process) ----------------------------------------------


def _peak_kib() -> float:
    """This process's peak resident memory in KiB. VmHWM belongs to the process's own memory
    map; ru_maxrss (the fallback) survives exec on Linux, so a child would report its parent's
    peak if the parent was ever larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _usage() -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        # Linux reports ru_maxrss in KiB; for children it is the largest single child (workers
        # are forked, not exec'd, so theirs start from zero).
        "peak_mb": _peak_kib() / 1024,
        "worker_peak_mb": kids.ru_maxrss / 1024,
    }


def _settings():
    from pipeline.settings import load_settings

    return load_settings(environ={})


def _documents(corpus: str) -> list:
    from pipeline import sources

    settings = _settings()
    return list(sources.discover([corpus], settings.ingest))


def measure_stages(corpus: str) -> dict:
    """read, extract+normalise, fingerprint, assign+store: one core, one stage at a time."""
    from pipeline import extract
    from pipeline.fingerprint import fingerprint
    from pipeline.ingest import commit_batch
    from pipeline.models import Prepared, PreparedBatch
    from pipeline.store import open_store

    settings = _settings()
    size = settings.ingest.batch_size
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(stage: str, work):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = work()
        timings[stage] = time.perf_counter() - started
        cpu[stage] = time.process_time() - cpu_started
        return result

    documents = timed("read", lambda: _documents(corpus))
    articles = timed("extract+normalise", lambda: [extract.article_from(doc, settings.ingest) for doc in documents])
    prepared = timed("fingerprint", lambda: [Prepared(a, fingerprint(a, settings.matching)) for a in articles])
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "stories.db")

        def commit_all() -> None:
            for start in range(0, len(prepared), size):
                chunk = tuple(prepared[start : start + size])
                commit_batch(PreparedBatch(chunk, (), len(chunk)), store, settings, "bench")

        timed("assign+store", commit_all)
        store.close()
    return {"articles": len(documents), "seconds": timings, "cpu_seconds": cpu, **_usage()}


def measure_pipeline(corpus: str, workers: int, db: str | None = None) -> dict:
    """The whole library pipeline, end to end: read, prepare in `workers` processes, assign, store."""
    from pipeline.ingest import ingest

    settings = _settings()
    with tempfile.TemporaryDirectory() as tmp:
        path = db or str(Path(tmp) / "stories.db")
        commits: list[float] = []  # each batch's assign+store seconds: does the writer slow as the database grows?
        committed = [0.0]  # the run's assign+store seconds so far

        def on_batch(report) -> None:
            commits.append(report.seconds["assign+store"] - committed[0])
            committed[0] = report.seconds["assign+store"]

        started = time.perf_counter()
        report = ingest([corpus], settings, path, run_id="bench", workers=workers, on_batch=on_batch)
        seconds = time.perf_counter() - started
        usage = _usage()  # before scoring, which reads the corpus again
        quality = _quality(corpus, path)
    return {
        "articles": report.inputs, "seconds": seconds, "stages": report.seconds, "counts": report.counts(),
        "batch_commit_s": [round(value, 4) for value in commits],
        **quality, **usage,
    }


def measure_prepare(corpus: str, workers: int) -> dict:
    """Reading and preparing (extract, fingerprint) in `workers` processes, as the pipeline does,
    with nothing assigned or stored: the most the pipeline could reach if the writer cost nothing."""
    from pipeline.ingest import RunReport, _prepared_batches, batches, timed_iter

    settings = _settings()
    report = RunReport("bench")
    started = time.perf_counter()
    inputs = sum(
        batch.inputs
        for batch in _prepared_batches(timed_iter(batches([corpus], settings), report, "read"), settings, report, workers)
    )
    return {"articles": inputs, "seconds": time.perf_counter() - started, **_usage()}


def _quality(corpus: str, db: str) -> dict:
    """B-cubed scores of the stored stories against the generator's labels (JSON Lines corpora)."""
    from pipeline.evaluate import bcubed, predicted_labels, read_corpus

    if not corpus.endswith(".jsonl"):
        return {}
    records = read_corpus(corpus)
    precision, recall, f1 = bcubed(predicted_labels(records, Path(db)), {r["id"]: r["story"] for r in records})
    return {"bcubed": {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}}


def measure_baseline(corpus: str) -> dict:
    """The plain baseline: datasketch defaults per article, MinHashLSH query then insert, sqlite-utils."""
    import sqlite_utils
    from datasketch import MinHash, MinHashLSH

    word = re.compile(r"\w+")
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite_utils.Database(Path(tmp) / "baseline.db")
        table = db["articles"]
        rows: list[dict] = []
        started = time.perf_counter()
        count = 0
        with open(corpus, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                tokens = word.findall(record["text"].lower())
                shingles = [" ".join(tokens[i : i + 5]).encode("utf-8") for i in range(max(1, len(tokens) - 4))]
                minhash = MinHash(num_perm=128)
                minhash.update_batch(shingles)
                matches = lsh.query(minhash)
                lsh.insert(record["id"], minhash)
                rows.append({"id": record["id"], "title": record.get("title"), "text": record["text"],
                             "duplicate_of": matches[0] if matches else None})
                count += 1
                if len(rows) == 100:
                    table.insert_all(rows, pk="id")
                    rows = []
        if rows:
            table.insert_all(rows, pk="id")
        seconds = time.perf_counter() - started
    return {"articles": count, "seconds": seconds, **_usage()}


def measure_increment(new: str, db: str | None, repeats: int) -> dict:
    """Ingest `new` into a copy of `db` (or into an empty database), `repeats` times; the median time."""
    from pipeline.ingest import ingest

    settings = _settings()
    times = []
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stories.db"
            if db:
                shutil.copyfile(db, path)
            # Write the copy out first: otherwise the kernel flushes the 1 GB copy to disk while
            # the run is timed, and the measurement is of the harness's copy, not the run.
            os.sync()
            started = time.perf_counter()
            report = ingest([new], settings, path, run_id=f"inc{attempt}")
            times.append(time.perf_counter() - started)
            assert report.new_articles == report.inputs, "the increment overlaps the database"
    times.sort()
    return {"articles": report.inputs, "seconds": times[len(times) // 2], "all_seconds": times, **_usage()}


def measure_html(pages: str, workers: int) -> dict:
    """HTML pages through extraction and fingerprinting in `workers` processes (no storage)."""
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.ingest import prepare_batch

    settings = _settings()
    documents = _documents(pages)
    size = 50
    chunks = [documents[i : i + size] for i in range(0, len(documents), size)]
    with ProcessPoolExecutor(workers) as pool:
        # Start the workers and load trafilatura and the word table before the clock starts:
        # that is a fixed cost per worker, not a cost per page.
        list(pool.map(prepare_batch, [documents[:1]] * workers, [settings] * workers))
        started = time.perf_counter()
        results = list(pool.map(prepare_batch, chunks, [settings] * len(chunks)))
        seconds = time.perf_counter() - started
    ok = sum(len(r.prepared) for r in results)
    return {"articles": len(documents), "extracted": ok, "seconds": seconds, **_usage()}


def measure_prefect(inputs: str, runner: str) -> dict:
    """Prefect's fixed cost: import, embedded server start and one flow run over a handful of inputs."""
    # A home of its own: nothing cached by an earlier run (in ~/.prefect or elsewhere) is read back.
    home = tempfile.mkdtemp(prefix="newsdedup-bench-prefect-")
    os.environ["PREFECT_HOME"] = home
    try:
        started = time.perf_counter()
        from prefect.testing.utilities import prefect_test_harness

        imported = time.perf_counter() - started
        from flows.ingest import with_runner

        with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
            up = time.perf_counter() - started
            flow_started = time.perf_counter()
            counts = with_runner(runner)(paths=[inputs], db=str(Path(tmp) / "stories.db"))
            flow_seconds = time.perf_counter() - flow_started
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"articles": counts["inputs"], "import_s": imported, "server_s": up - imported,
            "flow_s": flow_seconds, "seconds": flow_seconds, **_usage()}


# The command's summary line: "time  27.10s in the flow (738 inputs/s), 39.2s with Prefect's start".
_FLOW_TIME = re.compile(r"^\s*time\s+([\d.]+)s in the flow \(")
_INPUTS = re.compile(r"^\s*inputs\s+([\d,]+)\s*$")


def measure_command(inputs: str) -> dict:
    """`newsdedup ingest INPUTS --quiet` as a user runs it: the default Prefect engine in embedded
    mode (a Prefect server started for the run), in a PREFECT_HOME of its own.

    The rate is over the flow's own time, from the command's summary, so the server's start is
    left out as the target asks; `command_s` is the command's whole wall time, start included.
    """
    home = tempfile.mkdtemp(prefix="newsdedup-bench-prefect-")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
        env["PREFECT_HOME"] = home
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "ingest", inputs, "--db", str(Path(home) / "stories.db"), "--quiet"],
            capture_output=True, text=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(home, ignore_errors=True)
    lines = done.stdout.splitlines()
    flow_s = [float(m.group(1)) for m in map(_FLOW_TIME.match, lines) if m]
    counted = [int(m.group(1).replace(",", "")) for m in map(_INPUTS.match, lines) if m]
    if done.returncode != 0 or not flow_s or not counted:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise SystemExit(f"newsdedup ingest exited with {done.returncode}, or without its summary")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "articles": counted[0], "seconds": flow_s[0], "command_s": seconds, "cpu_s": kids.ru_utime + kids.ru_stime,
        # The largest single process of the command's tree: the flow's own (the writer).
        "peak_mb": kids.ru_maxrss / 1024,
    }


MEASURES = {
    "corpus": lambda a: {"path": str(corpus_file(int(a[0])))},
    "stages": lambda a: measure_stages(a[0]),
    "pipeline": lambda a: measure_pipeline(a[0], int(a[1]), a[2] if len(a) > 2 else None),
    "baseline": lambda a: measure_baseline(a[0]),
    "prepare": lambda a: measure_prepare(a[0], int(a[1])),
    "increment": lambda a: measure_increment(a[0], a[1] or None, int(a[2])),
    "html": lambda a: measure_html(a[0], int(a[1])),
    "prefect": lambda a: measure_prefect(a[0], a[1]),
    "command": lambda a: measure_command(a[0]),
}


# -- orchestration ---------------------------------------------------------------------------------


def _median_run(runs: list[dict]) -> dict:
    """The run with the median time, with every run's time beside it."""
    ordered = sorted(runs, key=lambda run: run["seconds"])
    return {**ordered[len(ordered) // 2], "all_seconds": [round(run["seconds"], 3) for run in runs]}


def child(name: str, *args: str) -> dict:
    """Run one measurement in a fresh Python process and return what it reports."""
    env = dict(os.environ, PYTHONHASHSEED="0", DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, __file__, "measure", name, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"measurement {name} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def corpus_file(articles: int, seed: int = 1) -> Path:
    """The seeded corpus of `articles` (+ the increment), generated once into bench/.cache."""
    from generate import GENERATOR_VERSION, corpus, write_jsonl

    path = CACHE / f"corpus-v{GENERATOR_VERSION}-{articles}-s{seed}.jsonl"
    if not path.exists():
        write_jsonl(corpus(articles + INCREMENT, seed), path.with_suffix(".tmp"))
        lines = path.with_suffix(".tmp").read_text(encoding="utf-8").splitlines(keepends=True)
        path.with_name(path.stem + "-increment.jsonl").write_text("".join(lines[articles:]), encoding="utf-8")
        path.write_text("".join(lines[:articles]), encoding="utf-8")
        path.with_suffix(".tmp").unlink()
    return path


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory, 1), "python": platform.python_version(),
            "platform": platform.platform(), "load_at_start": round(load, 2)}


def rate(result: dict) -> float:
    return result["articles"] / result["seconds"] if result["seconds"] else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpora, to try the harness")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--large", type=int, default=100_000,
                        help="articles in the large corpus (memory and incremental tests); default 100,000")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    small, large = (2_000, 5_000) if args.quick else (20_000, args.large)
    began = time.perf_counter()
    results: dict = {"machine": machine(), "small": small, "large": large, "workers": args.workers}

    def step(label: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {label}", file=sys.stderr, flush=True)

    step("corpora")
    # Generated in a child: the parent stays small, and nothing it allocates can show up in a
    # measurement's memory figures.
    small_corpus, large_corpus = (Path(child("corpus", str(n))["path"]) for n in (small, large))
    increment = large_corpus.with_name(large_corpus.stem + "-increment.jsonl")
    step(f"stages on {small:,}")
    results["stages"] = child("stages", str(small_corpus))
    step(f"end to end on {small:,}, {args.workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        small_db = str(Path(tmp) / "small.db")
        results["pipeline_small"] = child("pipeline", str(small_corpus), str(args.workers), small_db)
        # The large corpus's increment into this smaller database too: how the cost of the same
        # batch grows with what is stored (empty, small, large).
        results["increment_small"] = child("increment", str(increment), small_db, "3")
    step(f"reading and preparing alone on {small:,}, {args.workers} workers")
    results["prepare_small"] = child("prepare", str(small_corpus), str(args.workers))
    step(f"end to end on {min(small, TEXT_FILES):,} .txt files")
    with tempfile.TemporaryDirectory() as tmp:
        from generate import write_text_files

        lines = small_corpus.read_text(encoding="utf-8").splitlines()[:TEXT_FILES]
        records = [json.loads(line) for line in lines]
        results["pipeline_text"] = child("pipeline", str(write_text_files(records, Path(tmp) / "txt")), str(args.workers))
    step(f"baseline on {small:,}")
    results["baseline"] = child("baseline", str(small_corpus))
    step(f"end to end on {large:,} (kept for the incremental test)")
    with tempfile.TemporaryDirectory() as tmp:
        big_db = str(Path(tmp) / "big.db")
        results["pipeline_large"] = child("pipeline", str(large_corpus), str(args.workers), big_db)
        step(f"incremental: {INCREMENT:,} into {large:,} and into an empty database")
        # Alternating, one run per child: the machine's speed drifts by 10-20% within minutes,
        # and three runs into one database then three into the other put the drift in the ratio.
        full, empty = [], []
        for _ in range(INCREMENT_PAIRS):
            full.append(child("increment", str(increment), big_db, "1"))
            empty.append(child("increment", str(increment), "", "1"))
        results["increment_full"], results["increment_empty"] = _median_run(full), _median_run(empty)
        results["increment_pair_ratios"] = [round(f["seconds"] / e["seconds"], 3) for f, e in zip(full, empty)]
    step(f"HTML: {HTML_PAGES} pages, {args.workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        from generate import write_html_pages

        records = [json.loads(line) for line in small_corpus.read_text(encoding="utf-8").splitlines()[:HTML_PAGES]]
        pages = write_html_pages(records, Path(tmp) / "html")
        results["html"] = child("html", str(pages), str(args.workers))
        results["html_1"] = child("html", str(pages), "1")
    step("Prefect start-up (seeds/)")
    results["prefect"] = child("prefect", str(ROOT / "seeds"), "threads")
    step(f"`newsdedup ingest` on {small:,} (the Prefect flow, embedded server)")
    results["command_small"] = child("command", str(small_corpus))
    results["total_s"] = time.perf_counter() - began
    results["load_at_end"] = round(os.getloadavg()[0], 2)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results))


def _commit_growth(run: dict, articles: int) -> list[str]:
    """The writer's time per batch early and late in the large run: flat if cost follows the batch."""
    commits = run.get("batch_commit_s") or []
    if len(commits) < 20:
        return []
    first, last = statistics.median(commits[:10]), statistics.median(commits[-10:])
    return [f"  writer time per batch while building the {articles:,} database: first 10 batches {first:.2f} s,"
            f" last 10 {last:.2f} s (medians; {last / first:.2f}x)"]


def render(r: dict) -> str:
    stages = r["stages"]
    n = stages["articles"]
    lines = [f"newsdedup benchmark: {r['machine']['cores']} cores, {r['machine']['cpu']}, {r['machine']['memory_gb']} GB",
             "", f"per stage, one core, {n:,} articles (JSON Lines):"]
    lines.append(f"  {'stage':<20} {'articles/s':>10} {'per CPU-s':>10}")
    for stage, seconds in stages["seconds"].items():
        lines.append(f"  {stage:<20} {n / seconds:>10,.0f} {n / stages['cpu_seconds'][stage]:>10,.0f}")
    lines.append(f"  {'peak memory':<20} {stages['peak_mb']:>10,.0f} MB")
    small, large, base = r["pipeline_small"], r["pipeline_large"], r["baseline"]
    ratio = rate(small) / rate(base)
    inc = r["increment_full"]["seconds"] / r["increment_empty"]["seconds"]
    lines += [
        "",
        f"end to end ({r['workers']} worker processes + the writer):",
        f"  {r['small']:>7,} articles  {rate(small):>8,.0f} articles/s  ({small['articles'] / small['cpu_s']:,.0f} per CPU-s)"
        f"  peak {small['peak_mb']:,.0f} MB"
        f" (+ workers {small['worker_peak_mb']:,.0f} MB each)",
        f"  {r['large']:>7,} articles  {rate(large):>8,.0f} articles/s  ({large['articles'] / large['cpu_s']:,.0f} per CPU-s)"
        f"  peak {large['peak_mb']:,.0f} MB"
        f" (+ workers {large['worker_peak_mb']:,.0f} MB each)",
        f"  {r['pipeline_text']['articles']:>7,} .txt files {rate(r['pipeline_text']):>7,.0f} articles/s"
        f"  ({r['pipeline_text']['articles'] / r['pipeline_text']['cpu_s']:,.0f} per CPU-s)",
        f"  baseline ({r['small']:,})  {rate(base):>8,.0f} articles/s  ({base['articles'] / base['cpu_s']:,.0f} per CPU-s)"
        f"  peak {base['peak_mb']:,.0f} MB",
        f"  ratio to baseline         {ratio:.1f}x   (target >= 4x; >= 2,000 articles/s)",
        *(
            [f"  {r['small']:>7,} read and prepared, nothing stored  {rate(r['prepare_small']):,.0f} articles/s"
             f"  ({r['prepare_small']['articles'] / r['prepare_small']['cpu_s']:,.0f} per CPU-s):"
             " the ceiling with a writer that cost nothing"]
            if "prepare_small" in r else []
        ),
        *(
            [f"  {r['small']:>7,} articles by `newsdedup ingest` (Prefect flow; server start excluded)"
             f"  {rate(r['command_small']):,.0f} articles/s  peak {r['command_small']['peak_mb']:,.0f} MB"
             f" (largest process); {r['command_small']['command_s']:.1f} s for the whole command"]
            if "command_small" in r else []
        ),
        *[
            f"  stories found on {run['articles']:,}: B-cubed P {run['bcubed']['precision']:.3f}"
            f" R {run['bcubed']['recall']:.3f} F1 {run['bcubed']['f1']:.3f} against the generator's labels"
            for run in (small, large) if "bcubed" in run
        ],
        "",
        f"incremental: {INCREMENT:,} new articles into {r['large']:,}: {r['increment_full']['seconds']:.2f} s,"
        f" into empty: {r['increment_empty']['seconds']:.2f} s, ratio {inc:.2f} (target <= 1.5)",
        *(
            [f"  medians of {len(r['increment_pair_ratios'])} alternating runs each; the pairs' ratios"
             f" {min(r['increment_pair_ratios']):.2f}-{max(r['increment_pair_ratios']):.2f}"]
            if "increment_pair_ratios" in r else []
        ),
        *(
            [f"  the same batch into {r['small']:,}: {r['increment_small']['seconds']:.2f} s"
             f" ({r['increment_small']['seconds'] / r['increment_empty']['seconds']:.2f}x empty)"]
            if "increment_small" in r else []
        ),
        *_commit_growth(large, r["large"]),
        f"HTML: {rate(r['html']):.1f} pages/s on {r['workers']} processes, {rate(r['html_1']):.1f} on one",
        f"Prefect fixed cost: import {r['prefect']['import_s']:.1f} s, server {r['prefect']['server_s']:.1f} s,"
        f" a flow over seeds/ {r['prefect']['flow_s']:.1f} s",
        f"benchmark wall time: {r['total_s'] / 60:.1f} min; load average {r['machine']['load_at_start']} at start,"
        f" {r['load_at_end']} at end (other work on the machine slows every wall-clock figure)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "measure":
        print(json.dumps(MEASURES[sys.argv[2]](sys.argv[3:])))
    else:
        sys.path.insert(0, str(HERE))
        main()
