"""Run summaries for people: plain text for the terminal, markdown and table rows for Prefect artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from .ingest import RunReport

# Eighths of a block, so a bar's length is exact to 1/8 of a character cell.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
# Story sizes are heavy-tailed: singletons dominate, a few stories have dozens of reports.
_SIZE_BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, None))


def plural(count: int, word: str) -> str:
    """`count` and `word` in agreement: "1 story", "2 stories", "1,000 new articles"."""
    if count == 1:
        return f"1 {word}"
    many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u") else word + "s"
    return f"{count:,} {many}"


def database_line(totals: Mapping[str, int]) -> str:
    """What the database holds after a run, e.g. "database now     5 articles, 1 story, 0 rejects"."""
    return (
        f"database now     {plural(totals['articles'], 'article')}, "
        f"{plural(totals['stories'], 'story')}, {plural(totals['rejects'], 'reject')}"
    )


def run_lines(counts: Mapping[str, float]) -> list[str]:
    """A run's summary for the terminal, from its counts (`RunReport.counts()`, which is also
    what the flow returns): the same lines whichever engine ran it. Its time comes after these."""
    def count(key: str) -> int:
        return int(counts.get(key, 0))

    inputs, new, unchanged, rejects = count("inputs"), count("new_articles"), count("unchanged"), count("rejects")
    near = count("near_duplicates")
    lines = [
        f"inputs           {inputs:,}",
        f"new articles     {new:,}" + (f"  ({plural(near, 'near-duplicate')} among them)" if near else ""),
        f"unchanged        {unchanged:,}  (already in the database)",
        f"rejects          {rejects:,}" + ("  (see: newsdedup rejects)" if rejects else ""),
        f"stories          {count('new_stories'):,} new, {count('grown_stories'):,} grown, "
        f"{count('merged_stories'):,} merged",
    ]
    if inputs != new + unchanged + rejects:
        lines.append("WARNING: inputs != new + unchanged + rejects; please report this as a bug")
    if new == 0 and rejects == 0 and inputs:
        lines.append("nothing new: every input was already stored")
    if inputs == 0 and "pages_fetched" not in counts:
        # (a QA pass: an empty directory ran and exited 0 without a word)
        lines.append("nothing to read: no files under the paths given (names starting with '.' are left out)")
    if "pages_fetched" in counts:
        lines.extend(web_lines(counts))
    return lines


def web_lines(counts: Mapping[str, float]) -> list[str]:
    """What a run fetched from the web, and whether it found anything new there (from its counts)."""
    pages, failed, known, not_modified, listings = (
        int(counts.get(key, 0))
        for key in ("pages_fetched", "pages_failed", "known_urls_skipped", "listings_not_modified", "listings_fetched")
    )
    lines = [
        f"fetched          {plural(pages, 'page')}"
        + (f" ({failed:,} failed: unreachable, HTTP errors or refused)" if failed else "")
        + ", "
        + (f"{listings:,} feed or sitemap read" if listings == 1 else f"{listings:,} feeds or sitemaps read")
        + (f" ({not_modified:,} not modified)" if not_modified else ""),
        f"known URLs       {known:,}  (already stored, not fetched again)",
    ]
    if pages == 0:
        why = []
        if not_modified:
            why.append(f"{plural(not_modified, 'source')} not modified since the last run")
        if known:
            why.append(f"{plural(known, 'listed URL')} already stored")
        lines.append("fetched nothing new" + (f": {'; '.join(why)}" if why else ""))
    return lines


def input_rate(inputs: float, seconds: float) -> str:
    """Inputs a second as the run summary and the progress line both say it."""
    if seconds <= 0:
        return "no time measured"
    rate = inputs / seconds
    # Under 10 a second, a decimal ("1 inputs/s" read oddly, and 0.4 is not 0).
    return f"{rate:,.1f} inputs/s" if rate < 10 else f"{rate:,.0f} inputs/s"


def summary_lines(
    report: RunReport, totals: Mapping[str, int] | None = None, elapsed_s: float | None = None
) -> list[str]:
    """The summary of a run made in this process (the local engine, --retry-rejects, the flow's own log).

    Its one rate is over `elapsed_s`, the run's whole time when the caller has it, else over
    the stages' sum; the stages follow it, so the time they leave out is visible."""
    lines = run_lines(report.counts())
    if report.seconds:
        seconds = elapsed_s if elapsed_s is not None else sum(report.seconds.values())
        stages = ", ".join(f"{stage} {value:.2f}s" for stage, value in report.seconds.items())
        lines.append(f"time             {seconds:.2f}s ({input_rate(report.inputs, seconds)}); stages: {stages}")
    if totals:
        lines.append(database_line(totals))
    return lines


def flow_summary_lines(counts: Mapping[str, float], command_s: float) -> list[str]:
    """The summary of a run through the Prefect flow, from what the flow returns (its counts and
    its own `seconds`), for a command that took `command_s` with Prefect's start: the lines of
    `summary_lines`, with the time the flow measured (and gave its own log) as the one rate."""
    counts = dict(counts)
    flow_s = counts.pop("seconds", None)
    lines = run_lines(counts)
    if flow_s:
        lines.append(
            f"time             {flow_s:.2f}s in the flow ({input_rate(counts.get('inputs', 0), flow_s)}), "
            f"{command_s:.1f}s with Prefect's start"
        )
    return lines


STORY_TABLE_COLUMNS = ("story_id", "title", "article_count", "outlets", "canonical_url")
# A table artifact is for browsing: the largest stories first, and not thousands of rows.
STORY_TABLE_ROWS = 200


def story_table(stories: Sequence[dict]) -> list[dict]:
    """Rows of the new-and-grown-stories table: id, title, size, outlets, canonical link."""
    return [{key: row.get(key) for key in STORY_TABLE_COLUMNS} for row in stories[:STORY_TABLE_ROWS]]


def bar(value: float, largest: float, width: int) -> str:
    """A horizontal bar of unicode blocks, `width` cells long when `value` equals `largest`."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))
    return _FULL * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def bar_chart(rows: Sequence[tuple[str, int]], width: int = 40) -> str:
    """Labelled counts as an aligned text bar chart (for a fenced block in markdown)."""
    if not rows:
        return ""
    largest = max(count for _, count in rows)
    label_width = max(len(label) for label, _ in rows)
    count_width = max(len(f"{count:,}") for _, count in rows)
    return "\n".join(
        f"{label.rjust(label_width)} │ {f'{count:,}'.rjust(count_width)} {bar(count, largest, width)}".rstrip()
        for label, count in rows
    )


def size_histogram(sizes: Iterable[int]) -> list[tuple[str, int]]:
    """Story sizes counted in bins (1, 2, 3-4, 5-9, 10-19, 20+), every bin listed."""
    sizes = list(sizes)
    rows = []
    for low, high in _SIZE_BINS:
        label = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        rows.append((label, sum(1 for s in sizes if s >= low and (high is None or s <= high))))
    return rows


def similarity_histogram(similarities: Iterable[float], bins: int = 10) -> list[tuple[str, int]]:
    """Similarities in [0, 1] counted in `bins` equal bins, labelled by their range."""
    counts = [0] * bins
    for value in similarities:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    return [(f"{i / bins:.1f}-{(i + 1) / bins:.1f}", count) for i, count in enumerate(counts)]


def _chart_section(heading: str, caption: str, rows: Sequence[tuple[str, int]]) -> list[str]:
    return ["", f"## {heading}", "", caption, "", "```text", bar_chart(rows), "```"]


def charts_markdown(story_sizes: Sequence[int], similarities: Sequence[float]) -> list[str]:
    """Markdown lines with the two pictures of a run: story sizes and similarities."""
    lines: list[str] = []
    if story_sizes:
        stories = plural(len(story_sizes), "story")
        lines += _chart_section(
            "Story sizes", f"Articles per story, over the {stories} this run created or grew:",
            size_histogram(story_sizes),
        )
    if similarities:
        lines += _chart_section(
            "How close the new articles are to their story",
            f"Similarity to the story's canonical article, for {plural(len(similarities), 'new article')} "
            "that joined a story (1.0 = the same text):",
            similarity_histogram(similarities),
        )
    return lines


def stage_times_markdown(seconds: dict[str, float], inputs: int) -> list[str]:
    """Markdown lines with the time per stage, as a table with bars."""
    if not seconds:
        return []
    total = sum(seconds.values())
    largest = max(seconds.values())
    lines = ["", "## Time per stage", "", "| stage | seconds | share | |", "|---|---:|---:|---|"]
    for stage, value in seconds.items():
        share = value / total if total > 0 else 0.0
        lines.append(f"| {stage} | {value:.2f} | {share:.0%} | {bar(value, largest, 20)} |")
    rate = f" ({input_rate(inputs, total)})" if total > 0 and inputs else ""
    lines.append(f"| **total** | **{total:.2f}** | | {rate.strip()} |")
    return lines


def summary_markdown(
    report: RunReport,
    totals: dict[str, int],
    stories: Sequence[dict],
    rejects: Sequence[dict],
    similarities: Sequence[float] = (),
) -> str:
    """The run summary as markdown, for a Prefect artifact."""
    lines = [
        f"# newsdedup run `{report.run_id}`",
        "",
        "| | count |",
        "|---|---:|",
        f"| inputs | {report.inputs:,} |",
        f"| new articles | {report.new_articles:,} |",
        f"| near-duplicates | {report.near_duplicates:,} |",
        f"| unchanged re-ingests | {report.unchanged:,} |",
        f"| rejects | {report.rejects:,} |",
        f"| new stories | {len(report.new_stories):,} |",
        f"| grown stories | {len(report.grown_stories):,} |",
        f"| merged stories | {len(report.merged):,} |",
        *(
            [f"| pages fetched | {report.pages_fetched:,} |", f"| of those, failed | {report.pages_failed:,} |",
             f"| known URLs skipped | {report.known_urls:,} |",
             f"| feeds/sitemaps not modified | {len(report.not_modified):,} |"]
            if report.web_sources else []
        ),
        "",
        f"Database now: {plural(totals['articles'], 'article')} in {plural(totals['stories'], 'story')}; "
        f"{plural(totals['rejects'], 'reject')}.",
    ]
    if report.web_sources and report.pages_fetched == 0:
        lines += ["", web_lines(report.counts())[-1] + "."]
    lines += stage_times_markdown(report.seconds, report.inputs)
    lines += charts_markdown([story["article_count"] for story in stories], similarities)
    if stories:
        lines += ["", "## New and grown stories", "", "| story | size | title | outlets |", "|---:|---:|---|---|"]
        for story in stories[:50]:
            title = (story.get("title") or "").replace("|", "\\|")
            lines.append(
                f"| {story['story_id']} | {story['article_count']} | {title} | {story.get('outlets') or ''} |"
            )
        if len(stories) > 50:
            lines.append(f"\n…and {len(stories) - 50:,} more.")
    if rejects:
        lines += ["", "## Rejects", "", "| input | stage | reason |", "|---|---|---|"]
        for row in rejects[:50]:
            lines.append(f"| `{row['ref']}` | {row['stage']} | {row['reason']} |")
    return "\n".join(lines) + "\n"
