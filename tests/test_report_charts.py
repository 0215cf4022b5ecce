"""Run summary pictures: bars, histograms, time per stage, and the summary that holds them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline import report
from pipeline.ingest import RunReport


def test_bar_length_is_proportional_to_eighths_of_a_cell():
    assert report.bar(10, 10, 4) == "████"
    assert report.bar(5, 10, 4) == "██"
    assert report.bar(1, 16, 4) == "▎"  # 1/16 of 32 eighths = 2 eighths
    assert report.bar(0, 10, 4) == ""
    assert report.bar(1, 1000, 4) == "▏", "a non-zero count must stay visible"


def test_bar_chart_aligns_labels_and_counts():
    # 4/67 of 10 cells is 4.8 eighths of a cell: five eighths.
    chart = report.bar_chart([("1", 67), ("10-19", 4), ("20+", 0)], width=10).splitlines()
    assert chart == ["    1 │ 67 ██████████", "10-19 │  4 ▋", "  20+ │  0"]


def test_size_histogram_bins_every_size():
    rows = dict(report.size_histogram([1, 1, 2, 3, 4, 5, 9, 10, 19, 20, 300]))
    assert rows == {"1": 2, "2": 1, "3-4": 2, "5-9": 2, "10-19": 2, "20+": 2}


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=200))
def test_similarity_histogram_counts_every_value_once(values):
    rows = report.similarity_histogram(values)
    assert len(rows) == 10 and sum(count for _, count in rows) == len(values)
    assert rows[0][0] == "0.0-0.1" and rows[-1][0] == "0.9-1.0"


def test_summary_markdown_has_times_and_charts():
    run = RunReport("abc")
    run.inputs, run.new_articles = 12, 12
    run.seconds = {"read": 0.5, "extract+fingerprint": 2.0, "assign+store": 1.5}
    stories = [{"story_id": 1, "article_count": 7, "title": "A | B", "outlets": "x.com"},
               {"story_id": 2, "article_count": 5, "title": "C", "outlets": None}]
    markdown = report.summary_markdown(run, {"articles": 12, "stories": 2, "rejects": 0}, stories, [], [0.35, 0.4, 1.0])
    assert "| extract+fingerprint | 2.00 | 50% |" in markdown
    assert "| **total** | **4.00** |" in markdown and "3.0 inputs/s" in markdown
    assert "## Story sizes" in markdown and "5-9 │ 2 " in markdown
    assert "0.3-0.4 │ 1 " in markdown and "0.9-1.0 │ 1 " in markdown
    assert markdown.count("```") == 4, "each chart is one fenced block"
    assert "A \\| B" in markdown


def test_summary_markdown_without_stories_has_no_charts():
    markdown = report.summary_markdown(RunReport("abc"), {"articles": 0, "stories": 0, "rejects": 0}, [], [])
    assert "Story sizes" not in markdown and "```" not in markdown and "Time per stage" not in markdown


def test_story_table_keeps_the_published_columns_and_caps_rows():
    rows = report.story_table([{"story_id": i, "title": "t", "article_count": 2, "outlets": "o",
                                "canonical_url": "u", "updated_at": "x"} for i in range(500)])
    assert len(rows) == report.STORY_TABLE_ROWS
    assert list(rows[0]) == ["story_id", "title", "article_count", "outlets", "canonical_url"]


def test_a_flow_summary_gives_the_counts_and_the_flows_own_time():
    counts = {"inputs": 20_000, "new_articles": 19_990, "rejects": 10, "seconds": 25.0}
    lines = report.flow_summary_lines(counts, 37.25)
    assert lines[0] == "inputs           20,000" and "new articles     19,990" in lines
    assert lines[-1] == "time             25.00s in the flow (800 inputs/s), 37.2s with Prefect's start"
    assert counts["seconds"] == 25.0  # the flow's result is left as it came
    web = report.flow_summary_lines({"inputs": 3, "pages_fetched": 0, "known_urls_skipped": 3}, 1.0)
    assert web[-1] == "fetched nothing new: 3 listed URLs already stored"
    assert not any(line.startswith("time") for line in web)


def test_one_of_each_reads_in_the_singular():
    assert [report.plural(n, "story") for n in (0, 1, 2, 1_000)] == ["0 stories", "1 story", "2 stories", "1,000 stories"]
    assert report.plural(1, "listed URL") == "1 listed URL" and report.plural(2, "day") == "2 days"
    assert report.database_line({"articles": 1, "stories": 1, "rejects": 1}) == "database now     1 article, 1 story, 1 reject"
    run = _run(inputs=2, new_articles=1, near_duplicates=1, rejects=1, new_stories={1})
    assert "new articles     1  (1 near-duplicate among them)" in report.summary_lines(run)
    markdown = report.summary_markdown(run, {"articles": 1, "stories": 1, "rejects": 1}, [{"story_id": 1, "article_count": 1}], [], [0.5])
    assert "Database now: 1 article in 1 story; 1 reject." in markdown
    assert "over the 1 story this run created or grew" in markdown and "for 1 new article that joined" in markdown


def _run(**counts) -> RunReport:
    run = RunReport("abc")
    for key, value in counts.items():
        setattr(run, key, value)
    return run


def test_both_engines_print_the_same_summary_for_the_same_counts():
    runs = [
        _run(inputs=9, new_articles=5, near_duplicates=2, unchanged=3, rejects=1, new_stories={1, 2}, grown_stories={3},
             merged=[(4, 1)]),
        _run(inputs=4, unchanged=4),  # nothing new
        _run(inputs=3, unchanged=3, web_sources=True, listings_fetched=1, known_urls=3, not_modified=["feed"]),
    ]
    for run in runs:
        run.seconds = {"read": 0.5, "extract+fingerprint": 2.0, "assign+store": 1.5}
        local = report.summary_lines(run, elapsed_s=5.0)
        flow = report.flow_summary_lines({**run.counts(), "seconds": 5.0}, 12.0)
        assert local[:-1] == flow[:-1]
        # One rate, over the run's own time, and the same in both.
        assert local[-1] == "time             5.00s (" + f"{run.inputs / 5:,.1f}" + " inputs/s); stages: read 0.50s, extract+fingerprint 2.00s, assign+store 1.50s"
        assert flow[-1] == f"time             5.00s in the flow ({run.inputs / 5:,.1f} inputs/s), 12.0s with Prefect's start"
        assert sum(line.count("inputs/s") for line in local + flow) == 2
    busy, idle, web = (report.flow_summary_lines(run.counts(), 1.0) for run in runs)
    assert "rejects          1  (see: newsdedup rejects)" in busy and "new articles     5  (2 near-duplicates among them)" in busy
    assert "stories          2 new, 1 grown, 1 merged" in busy
    assert "nothing new: every input was already stored" in idle
    assert web[-3:] == ["fetched          0 pages, 1 feed or sitemap read (1 not modified)",
                        "known URLs       3  (already stored, not fetched again)",
                        "fetched nothing new: 1 source not modified since the last run; 3 listed URLs already stored"]


def test_without_the_runs_own_time_the_rate_is_over_the_stages():
    run = _run(inputs=40, new_articles=40)
    run.seconds = {"read": 1.0, "assign+store": 1.0}
    assert report.summary_lines(run)[-1] == "time             2.00s (20 inputs/s); stages: read 1.00s, assign+store 1.00s"
