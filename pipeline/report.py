"""Run summaries for people: plain text for the terminal, markdown and table rows for Prefect artifacts."""

from __future__ import annotations

from typing import Sequence

from .ingest import RunReport


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def summary_lines(report: RunReport, totals: dict[str, int] | None = None) -> list[str]:
    """A short, aligned run summary for the terminal."""
    lines = [
        f"inputs           {report.inputs:,}",
        f"new articles     {report.new_articles:,}  (near-duplicates among them: {report.near_duplicates:,})",
        f"unchanged        {report.unchanged:,}  (already in the database)",
        f"rejects          {report.rejects:,}" + ("  (see: newsdedup rejects)" if report.rejects else ""),
        f"stories          {len(report.new_stories):,} new, {len(report.grown_stories):,} grown, "
        f"{len(report.merged):,} merged",
    ]
    if report.new_articles == 0 and report.rejects == 0 and report.inputs:
        lines.append("nothing new: every input was already stored")
    if report.web_sources:
        lines.extend(web_lines(report))
    if report.seconds:
        total = sum(report.seconds.values())
        stages = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in report.seconds.items())
        rate = f", {report.inputs / total:,.0f} inputs/s" if total > 0 else ""
        lines.append(f"time             {total:.2f}s ({stages}{rate})")
    if totals:
        lines.append(
            f"database now     {_plural(totals['articles'], 'article')}, "
            f"{_plural(totals['stories'], 'story').replace('storys', 'stories')}, "
            f"{_plural(totals['rejects'], 'reject')}"
        )
    if not report.balanced:
        lines.append("WARNING: inputs != new + unchanged + rejects; please report this as a bug")
    return lines


def web_lines(report: RunReport) -> list[str]:
    """What a run fetched from the web, and whether it found anything new there."""
    lines = [
        f"fetched          {_plural(report.pages_fetched, 'page')}, "
        f"{_plural(report.listings_fetched, 'feed or sitemap request')}"
        + (f" ({len(report.not_modified):,} not modified)" if report.not_modified else ""),
        f"known URLs       {report.known_urls:,}  (already stored, not fetched again)",
    ]
    if report.pages_fetched == 0:
        why = []
        if report.not_modified:
            why.append(f"{_plural(len(report.not_modified), 'source')} not modified since the last run")
        if report.known_urls:
            why.append(f"{_plural(report.known_urls, 'listed URL')} already stored")
        lines.append("fetched nothing new" + (f": {'; '.join(why)}" if why else ""))
    return lines


def web_nothing_new(counts: dict[str, int]) -> list[str]:
    """The "fetched nothing new" line for a run's counts (as a flow returns them), if it applies."""
    if counts.get("pages_fetched", 1) != 0:
        return []
    report = RunReport("")
    report.pages_fetched = 0
    report.known_urls = counts.get("known_urls_skipped", 0)
    report.not_modified = [""] * counts.get("listings_not_modified", 0)
    return web_lines(report)[-1:]


def summary_markdown(
    report: RunReport, totals: dict[str, int], stories: Sequence[dict], rejects: Sequence[dict]
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
            [f"| pages fetched | {report.pages_fetched:,} |", f"| known URLs skipped | {report.known_urls:,} |",
             f"| feeds/sitemaps not modified | {len(report.not_modified):,} |"]
            if report.web_sources else []
        ),
        "",
        f"Database now: {totals['articles']:,} articles in {totals['stories']:,} stories; "
        f"{totals['rejects']:,} rejects.",
    ]
    if report.web_sources and report.pages_fetched == 0:
        lines += ["", web_lines(report)[-1] + "."]
    if report.seconds:
        lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in report.seconds.items()]
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
