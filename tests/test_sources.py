"""Reading inputs: files and directories, refs, JSON Lines line by line, bad files as rejects."""

import gzip
import json

from hypothesis import given, strategies as st

from pipeline.models import RawDocument, Rejected
from pipeline.settings import IngestSettings
from pipeline.sources import decode_text, discover, gunzip_capped

SETTINGS = IngestSettings()


def test_directories_are_read_recursively_with_relative_refs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text("Title\n\nBody")
    (tmp_path / "a" / "b" / "two.html").write_text("<html></html>")
    (tmp_path / "a" / ".hidden.txt").write_text("x")
    refs = [doc.ref for doc in discover([str(tmp_path / "a")], SETTINGS)]
    assert refs == ["b/two.html", "one.txt"]


def test_everything_in_a_directory_is_read_or_rejected_and_nothing_blocks(tmp_path):
    """(QA pass: a link to nothing, a named pipe and a linked directory inside a directory were
    neither read nor rejected; a pipe opened for reading would have waited for a writer.)"""
    import os

    from pipeline.progress import expected_inputs

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "two.txt").write_text("Title\n\nBody")
    root = tmp_path / "inbox"
    root.mkdir()
    (root / "one.txt").write_text("Title\n\nBody")
    (root / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(root / "pipe.jsonl")
    (root / "shared").symlink_to(shared)  # a linked directory is read
    (shared / "back").symlink_to(root)  # and a loop of links is reported once, not followed
    (root / "zreal").mkdir()  # a real directory, read already through a link to it
    (root / "zreal" / "three.txt").write_text("Title\n\nBody")
    (root / "alias").symlink_to(root / "zreal")
    docs = list(discover([str(root), "/dev/null"], SETTINGS))
    found = {d.ref: (d.reason if isinstance(d, Rejected) else "read") for d in docs}
    assert found == {
        "broken.txt": f"a symbolic link to nothing (its target {tmp_path / 'nowhere.txt'} does not exist)",
        "one.txt": "read",
        "pipe.jsonl": "a named pipe, not a file: not read (give a pipe's data on standard input: newsdedup ingest - < PIPE)",
        "shared/back": "a link to a directory that is read already (a loop of links): not read again",
        "shared/two.txt": "read",
        "alias/three.txt": "read",
        "zreal": "a directory read already through a link to it: not read again",
        "/dev/null": "a device, not a file: not read",
    }
    assert [d.ref for d in docs] == sorted(found, key=lambda ref: (ref.startswith("/"), ref))  # a stable order
    assert expected_inputs([str(root), "/dev/null"], SETTINGS) == len(docs)  # progress counts them too


def test_jsonl_lines_become_records_and_bad_lines_rejects(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"id": "a1", "text": "hello"}) + "\n"
        "\n"
        "{not json\n"
        "[1, 2]\n"
        + json.dumps({"text": "second"}) + "\n"
    )
    docs = list(discover([str(path)], SETTINGS))
    kinds = [(type(d).__name__, d.ref) for d in docs]
    given = str(path)
    assert kinds == [
        ("RawDocument", f"{given}:1"),
        ("Rejected", f"{given}:3"),
        ("Rejected", f"{given}:4"),
        ("RawDocument", f"{given}:5"),
    ]
    assert docs[1].reason == "line is not valid JSON"
    assert "not an object" in docs[2].reason
    assert docs[0].fields["id"] == "a1"


def test_gzipped_jsonl_is_streamed(tmp_path):
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i in range(3):
            handle.write(json.dumps({"id": str(i), "text": "t"}) + "\n")
    assert [d.fields["id"] for d in discover([str(path)], SETTINGS)] == ["0", "1", "2"]


def test_empty_missing_and_unsupported_files_are_rejects(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "notes.docx").write_bytes(b"PK")
    docs = list(discover([str(tmp_path), str(tmp_path / "missing.txt")], SETTINGS))
    assert all(isinstance(d, Rejected) for d in docs)
    reasons = {d.ref: d.reason for d in docs}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["empty.jsonl"] == "empty file"
    assert reasons["notes.docx"].startswith("unsupported file type")
    assert reasons[str(tmp_path / "missing.txt")] == "no such file or directory"


def test_oversized_file_is_rejected_unread(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"word " * 1000)
    [doc] = discover([str(path)], IngestSettings(max_file_bytes=100))
    assert isinstance(doc, Rejected) and "cap" in doc.reason


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"\0" * 5_000_000)
    try:
        gunzip_capped(bomb, 1_000_000)
    except Exception as exc:  # noqa: BLE001 - the type is checked below
        assert type(exc).__name__ == "TooLargeError"
    else:
        raise AssertionError("a gzip bomb was decompressed past the cap")


def test_decoding_accepts_utf8_utf16_latin1_and_refuses_binary():
    assert decode_text("café".encode("utf-8")) == "café"
    assert decode_text("café".encode("utf-16")) == "café"
    assert decode_text("café".encode("latin-1")) == "café"
    try:
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "DecodeError"
    else:
        raise AssertionError("binary data decoded as text")


def test_text_files_are_raw_documents(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello")
    [doc] = discover([str(path)], SETTINGS)
    assert isinstance(doc, RawDocument) and doc.kind == "text" and doc.body == b"hello"


def test_a_binary_or_utf16_json_lines_file_is_one_reject(tmp_path):
    random = __import__("random").Random(7)
    (tmp_path / "binary.jsonl").write_bytes(bytes(random.getrandbits(8) for _ in range(50_000)))
    (tmp_path / "binary.jsonl.gz").write_bytes(gzip.compress(bytes(random.getrandbits(8) for _ in range(50_000))))
    (tmp_path / "utf16.jsonl").write_bytes(((json.dumps({"text": "t"}) + "\n") * 20).encode("utf-16"))
    docs = {d.ref: d for d in discover([str(tmp_path)], SETTINGS)}
    assert set(docs) == {"binary.jsonl", "binary.jsonl.gz", "utf16.jsonl"}
    assert docs["binary.jsonl"].reason == docs["binary.jsonl.gz"].reason == "binary data, not JSON Lines"
    assert "UTF-16" in docs["utf16.jsonl"].reason and "UTF-8" in docs["utf16.jsonl"].reason


def test_a_damaged_stretch_in_real_json_lines_rejects_only_its_lines(tmp_path):
    good = "".join(json.dumps({"id": str(n), "text": "word " * 40}) + "\n" for n in range(200))
    damage = bytes(b for b in range(32) if b not in (10, 13)) * 8 + b"\n"
    (tmp_path / "in.jsonl").write_bytes(good.encode() + damage + good.replace('"id": "', '"id": "b').encode())
    docs = list(discover([str(tmp_path)], SETTINGS))
    assert sum(isinstance(d, RawDocument) for d in docs) == 400
    assert [d.ref for d in docs if isinstance(d, Rejected)] == ["in.jsonl:201"]


def test_a_plain_file_named_gz_says_it_is_not_gzip(tmp_path):
    (tmp_path / "a.jsonl.gz").write_text(json.dumps({"text": "t"}) + "\n")
    (tmp_path / "b.html.gz").write_text("<html><body><p>hello</p></body></html>")
    (tmp_path / "empty.jsonl.gz").write_bytes(b"")
    reasons = {d.ref: d.reason for d in discover([str(tmp_path)], SETTINGS)}
    assert reasons["a.jsonl.gz:1"].startswith("not gzip data")
    assert reasons["b.html.gz"].startswith("not gzip data")
    assert reasons["empty.jsonl.gz"].startswith("empty file")


def test_gzipped_text_files_are_read(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"hello"))
    [doc] = discover([str(tmp_path)], SETTINGS)
    assert isinstance(doc, RawDocument) and doc.kind == "text" and doc.body == b"hello"


def test_feed_and_sitemap_files_in_a_directory_say_how_to_read_them(tmp_path):
    (tmp_path / "saved.rss").write_text("<rss/>")
    (tmp_path / "sitemap.xml.gz").write_bytes(gzip.compress(b"<urlset/>"))
    reasons = {d.ref: d.reason for d in discover([str(tmp_path)], SETTINGS)}
    assert "newsdedup ingest FILE" in reasons["saved.rss"] and ".rss" in reasons["saved.rss"]
    assert ".xml.gz file" in reasons["sitemap.xml.gz"]


def test_a_good_record_among_binary_junk_is_stored_and_the_junk_rejected_by_line(tmp_path):
    random = __import__("random").Random(8)
    junk = bytes(b for b in (random.getrandbits(8) for _ in range(3000)) if b != 10)
    (tmp_path / "mixed.jsonl").write_bytes(junk + b"\n" + json.dumps({"id": "ok", "text": "t"}).encode() + b"\n" + junk)
    docs = list(discover([str(tmp_path)], SETTINGS))
    assert [d.fields["id"] for d in docs if isinstance(d, RawDocument)] == ["ok"]
    assert [d.ref for d in docs if isinstance(d, Rejected)] == ["mixed.jsonl:1", "mixed.jsonl:3"]


def test_feed_and_sitemap_files_gzipped_or_not_are_read_as_listings():
    from pipeline.web import split_locations

    names = ["a.rss.gz", "b.atom", "c.rdf.gz", "d.xml.gz", "e.json", "f.txt.gz", "g.jsonl.gz"]
    assert split_locations(names) == (["f.txt.gz", "g.jsonl.gz"], ["a.rss.gz", "b.atom", "c.rdf.gz", "d.xml.gz", "e.json"])


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=100))
def test_control_bytes_are_counted_as_the_plain_definition_counts_them(sample, per_hundred):
    from pipeline.sources import _too_many_controls

    controls = sum(1 for byte in sample if byte in set(range(0, 9)) | set(range(14, 32)) | {11, 12, 127})
    assert _too_many_controls(sample, per_hundred) == (controls * 100 > len(sample) * per_hundred)


# Standard input ('-'): the same records as the same lines in a file, named stdin.jsonl:N.

def _from_stdin(data: bytes, settings: IngestSettings | None = None) -> list:
    import io

    from pipeline.sources import stdin_documents

    return list(stdin_documents(settings or IngestSettings(), io.BytesIO(data)))


def _same_but_named(item, ref: str, origin: str):
    from dataclasses import replace

    if isinstance(item, Rejected):
        return replace(item, ref=item.ref.replace(ref, "stdin.jsonl", 1), input=origin)
    return replace(item, ref=item.ref.replace(ref, "stdin.jsonl", 1), source_path=origin)


@given(st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["id", "title", "text", "source", "x"]), st.text(max_size=30), max_size=4),
    st.text(max_size=20),  # not JSON, or JSON that is not an object
    st.just(""),
), max_size=12), st.booleans())
def test_standard_input_reads_as_the_same_lines_in_a_file_would(tmp_path_factory, lines, gzipped):
    body = "\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines).encode("utf-8")
    path = tmp_path_factory.mktemp("stdin") / ("in.jsonl.gz" if gzipped else "in.jsonl")
    path.write_bytes(gzip.compress(body) if gzipped else body)
    from_file = list(discover([str(path)], IngestSettings()))
    from_stdin = _from_stdin(path.read_bytes())
    expected = [_same_but_named(item, str(path), "(standard input)") for item in from_file]
    if from_file and isinstance(from_file[-1], Rejected) and from_file[-1].reason.startswith("empty file"):
        assert from_stdin[-1].reason.startswith("standard input was empty")
        expected, from_stdin = expected[:-1], from_stdin[:-1]
    assert from_stdin == expected


def test_standard_input_of_binary_data_is_one_reject():
    import os

    (reject,) = _from_stdin(os.urandom(3000))
    assert reject.ref == "stdin.jsonl" and reject.reason == "binary data, not JSON Lines"
    assert reject.input == "(standard input)"
