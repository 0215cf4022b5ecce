"""Fuzzing the edges that meet outside data: normalization, extraction wrappers, JSON Lines reading.

The invariants: no exception but BadInputError escapes a per-record stage, and every input is
accounted for (prepared + rejected == inputs), down to rows in a real story database.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings as hypothesis_settings, strategies as st

from pipeline import normalize, sources
from pipeline.errors import BadInputError, DecodeError
from pipeline.ingest import commit_batch, prepare, prepare_batch
from pipeline.models import RawDocument, Rejected
from pipeline.store import open_store

SLOW = hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEWS_WORDS = (
    "council budget voted minister said police report city river flood election court judge "
    "company shares market storm school hospital museum ferry tuesday percent million"
).split()
ODD_WORDS = ["\u00e9t\u00e9", "\u0130stanbul", "\ufb01ne", "\u200bzero", "\x00nul", "\ud800", "\u2014", "\U0001f600",
             "\u0645\u0631\u062d\u0628\u0627", "\u4e2d\u6587", "A\u0301", "\r\n", "\t", "photo credit: AP", "\\u0000"]

# Texts of every kind: arbitrary Unicode (surrogates included), and article-length word salads
# that get past the length checks into fingerprinting.
word_salad = st.lists(st.sampled_from(NEWS_WORDS + ODD_WORDS), min_size=70, max_size=400).map(" ".join)
any_text = st.one_of(st.text(), word_salad, word_salad, st.text(alphabet=st.characters(codec="utf-8")).map(lambda t: t * 40))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
record = st.fixed_dictionaries(
    {"text": st.one_of(word_salad, word_salad, any_text, json_value)},
    optional={
        # Mostly the right types, so that most records get as far as fingerprinting.
        "id": st.one_of(st.text(max_size=20), st.text(max_size=20), st.integers(), json_value),
        "title": st.one_of(st.text(max_size=60), st.text(max_size=60), st.none(), json_value),
        "url": st.one_of(st.just("https://example.com/a?utm_source=x#frag"), st.text(max_size=40), json_value),
        "source": st.one_of(st.text(max_size=20), st.text(max_size=20), json_value),
        "published": st.one_of(st.sampled_from(["2024-02-30", "2999-01-01", "0001-01-01", "yesterday", "1e9",
                                                "2024-03-01T25:61:00Z", "2024-03-01T10:00:00+14:00"]), json_value),
        "extra": json_value,
    },
)


@given(any_text)
def test_normalization_never_fails_and_is_idempotent(text):
    norm = normalize.matching_text(text)
    assert normalize.matching_text(norm) == norm
    normalize.unified(text)
    normalize.words(norm)
    normalize.date_marker(text)


@given(st.binary(max_size=3000))
def test_decoding_bytes_gives_text_or_a_decode_error(data):
    try:
        text = sources.decode_text(data)
    except DecodeError:
        return
    assert isinstance(text, str)


def _only_bad_input(raw: RawDocument, settings) -> None:
    try:
        prepared = prepare(raw, settings)
    except BadInputError as exc:
        assert exc.reason.strip()
        event(f"rejected: {type(exc).__name__}")
        return
    event("became an article")  # --hypothesis-show-statistics shows how often fuzzing got this far
    article = prepared.article
    # Whatever got through can be stored: valid UTF-8, no NULs, JSON-serialisable extras.
    for value in (article.text, article.title, article.external_id, article.url, article.source, article.norm_text):
        if value is not None:
            value.encode("utf-8")
    assert "\x00" not in article.text
    json.dumps(dict(article.extra), ensure_ascii=False, default=str).encode("utf-8")


@SLOW
@given(st.one_of(st.binary(max_size=3000), *[any_text.map(lambda t: ("Title\n" + t).encode("utf-8", "surrogatepass"))] * 2,
                 word_salad.map(lambda t: t.encode("utf-16", "surrogatepass")), word_salad.map(lambda t: t.encode("cp1252", "replace"))))
def test_text_extraction_raises_only_bad_input(settings, data):
    _only_bad_input(RawDocument(ref="fuzz.txt", kind="text", body=data), settings)


html_page = st.builds(
    lambda title, paragraphs, junk: (
        f"<html><head><title>{title}</title>{junk}</head><body><article>"
        + "".join(f"<p>{p}</p>" for p in paragraphs)
        + f"</article>{junk}</body></html>"
    ).encode("utf-8", "surrogatepass"),
    st.text(max_size=40),
    st.lists(any_text, max_size=5),
    st.sampled_from(["", "<script>x()</script>", "<nav><a href=/>Home</a></nav>", "<!--", "<![CDATA[", "\x00", "<p"]),
)


@SLOW
@given(st.one_of(html_page, st.binary(max_size=2000)))
def test_html_extraction_raises_only_bad_input(settings, data):
    _only_bad_input(RawDocument(ref="fuzz.html", kind="html", body=data), settings)


@hypothesis_settings(max_examples=300, deadline=None)
@given(record | st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_record_extraction_raises_only_bad_input(settings, fields):
    _only_bad_input(RawDocument(ref="fuzz.jsonl:1", kind="record", fields=fields), settings)


line = st.one_of(
    record.map(lambda r: json.dumps(r, ensure_ascii=True).encode()),
    record.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"", b"   ", b"{", b"null", b"[]", b'{"text": "\\ud83d"}', b"\xef\xbb\xbf{}", b"\x00\x00"]),
)


def _is_record(line: bytes) -> bool:
    try:
        sources.parse_record(line)
    except BadInputError:
        return False
    return True


@SLOW
@given(st.lists(line, max_size=25))
def test_json_lines_every_line_ends_stored_or_rejected(settings, lines):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.jsonl"
        path.write_bytes(b"\n".join(lines))
        items = list(sources.file_documents(path, "fuzz.jsonl", settings.ingest))
        non_blank = sum(1 for item in lines if item.strip())
        if len(items) == 1 and items[0].ref == "fuzz.jsonl" and non_blank:
            # Refused whole as plainly not JSON Lines (binary, UTF-16): only when no line is a record.
            assert "JSON Lines" in items[0].reason
            assert not any(_is_record(line) for line in lines)
        else:
            assert len(items) == (non_blank if non_blank else 1)
        batch = prepare_batch(items, settings)
        assert len(batch.prepared) + len(batch.rejected) == batch.inputs == len(items)
        store = open_store(Path(directory) / "stories.db")
        try:
            saved = commit_batch(batch, store, settings, "fuzz")
            counts = store.counts()
        finally:
            store.close()
        assert saved.new_articles + saved.unchanged + saved.rejects == len(items)
        assert counts["articles"] == saved.new_articles
        assert counts["rejects"] == len({(r.ref, r.input) for r in batch.rejected if isinstance(r, Rejected)})
