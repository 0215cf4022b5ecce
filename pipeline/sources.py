"""Where raw documents come from: files and directories of text, HTML and JSON Lines.

Reading never raises for bad input: an input that cannot be read is yielded as `Rejected`,
so every input is accounted for.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import stat
import sys
import zlib
from pathlib import Path
from typing import Iterator, Sequence

from .errors import BadInputError, DecodeError, EmptyInputError, ParseError, TooLargeError
from .models import RawDocument, Rejected
from .normalize import without_lone_surrogates
from .settings import IngestSettings

log = logging.getLogger(__name__)

STAGE = "read"
TEXT_SUFFIXES = (".txt", ".txt.gz")
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
SUPPORTED = TEXT_SUFFIXES + HTML_SUFFIXES + JSONL_SUFFIXES
# Feeds and sitemaps: files whose links are fetched (pipeline/web.py) when named on their own.
LISTING_SUFFIXES = tuple(f"{kind}{gz}" for kind in (".xml", ".rss", ".atom", ".rdf", ".json") for gz in ("", ".gz"))
_GZIP_MAGIC = b"\x1f\x8b"
# `newsdedup ingest -` reads JSON Lines (plain or gzipped) from standard input. Its lines are
# named like a file's, `stdin.jsonl:N`, so the same stream piped in again is recognised record
# by record (models.record_file); rejects name `STDIN_ORIGIN` as their input.
STDIN = "-"
STDIN_REF = "stdin.jsonl"
STDIN_ORIGIN = "(standard input)"
# A JSON Lines file whose first bytes hold more control bytes than this share is binary: JSON
# escapes every control character, so real JSON Lines (in any encoding we read) holds none,
# while random bytes hold ~11%. One damaged stretch in a real file stays far below it.
_BINARY_HEAD_SHARE = 5
_HEAD_BYTES = 65536
# cp1252 leaves these five bytes undefined: a file that needs them is not Windows/Latin-1 text.
_UNDEFINED_CP1252 = frozenset(b"\x81\x8d\x8f\x90\x9d")
# A file named .jsonl that is something else (binary, CSV) would otherwise leave one reject per
# line; after this many unreadable lines in a row the rest is one reject.
_MAX_BAD_LINES_IN_A_ROW = 1000
_CONTROL_BYTES = bytes(sorted(frozenset(range(0, 9)) | frozenset(range(14, 32)) | {11, 12, 127}))


def kind_of(path: Path) -> str | None:
    """"text", "html" or "jsonl" by the file's name, None for a type we do not read."""
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def _utf16_without_bom(sample: bytes) -> str | None:
    """"utf-16-le" or "utf-16-be" when `sample` looks like BOM-less UTF-16, else None.

    Latin-script UTF-16 has a NUL in every other byte; binary data has NULs scattered on both
    sides, so one side must be mostly NUL and the other almost free of them.
    """
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / max(len(odd), 1)
    if odd_nuls > 0.6 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.6 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def _too_many_controls(sample: bytes, per_hundred: int) -> bool:
    # Real text may carry stray NULs or escapes (normalisation drops them); binary data is full of them.
    # Counted in C (bytes.translate deleting them): every text file's first 64 KB pass here.
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls * 100 > len(sample) * per_hundred


def decode_text(data: bytes) -> str:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 (with a BOM, or without one when
    plainly so), else Windows-1252.

    Raises:
        DecodeError: the bytes are binary (control bytes, NULs) or in no encoding we accept.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DecodeError("not valid UTF-16 text despite its byte-order mark", str(exc)) from None
    sample = data[:65536]
    utf16 = _utf16_without_bom(sample)
    if utf16:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError:
            pass  # not UTF-16 after all; the checks below decide
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = str(exc)
    else:
        # Valid UTF-8 is text by now unless it is mostly control bytes: a lower bar than for
        # bytes that are not even UTF-8 (below).
        if _too_many_controls(sample, 10):
            raise DecodeError("binary data, not text", "valid UTF-8 but full of control characters")
        return text
    if b"\x00" in sample or _too_many_controls(sample, 1):
        raise DecodeError("binary data, not text", utf8_error)
    if any(byte in _UNDEFINED_CP1252 for byte in data):
        raise DecodeError("not UTF-8 and not Latin-1/Windows-1252 text", utf8_error)
    return data.decode("cp1252")


def read_capped(path: Path, settings: IngestSettings) -> bytes:
    """The bytes of `path`, gunzipped when it ends in .gz, refusing anything over the caps.

    Raises:
        EmptyInputError: the file is empty.
        TooLargeError: the file, or what it decompresses to, is over the configured cap.
        DecodeError: a .gz file is truncated or corrupt.
    """
    size = path.stat().st_size
    if size == 0:
        raise EmptyInputError("empty file")
    if size > settings.max_file_bytes:
        raise TooLargeError(
            f"file is {size:,} bytes, over the {settings.max_file_bytes:,}-byte cap (ingest.max_file_bytes)"
        )
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        # One compressed document may not expand past what it could have been uncompressed.
        data = gunzip_capped(data, min(settings.max_decompressed_bytes, settings.max_file_bytes))
        if not data:
            raise EmptyInputError("empty file once decompressed")
    return data


_NOT_GZIP = "not gzip data, though the name ends in .gz (rename it without .gz if it is plain)"


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """Decompress gzip data, stopping at `limit` bytes so a gzip bomb cannot exhaust memory.

    Raises:
        TooLargeError: the data expands past `limit`.
        DecodeError: the data is not gzip, or is truncated or corrupt.
    """
    if not data.startswith(_GZIP_MAGIC):
        raise DecodeError(_NOT_GZIP)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeError("corrupt gzip data", str(exc)) from None
    if len(out) > limit:
        raise TooLargeError(f"decompresses to more than {limit:,} bytes (ingest.max_decompressed_bytes)")
    if not inflater.eof:
        raise DecodeError("truncated gzip data")
    return out


def entries_under(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for every file under `root`, and (path, why) for what is found there but
    cannot be read as one, in a stable order (names sorted, a directory's entries where its
    name sorts); hidden entries (names starting with ".") are left out.

    Every entry is accounted for, so that an ingest of the directory stores or rejects each: a
    symbolic link to a directory is followed, once (a link back into a directory already being
    read is reported, not followed round a loop); a link to nothing, a named pipe, a socket or a
    device is reported, not opened (reading a named pipe would wait for a writer for ever).
    """
    seen = {os.path.realpath(root)}

    def walk(directory: Path) -> Iterator[tuple[Path, str | None]]:
        try:
            names = sorted(entry.name for entry in os.scandir(directory))
        except OSError as exc:
            yield directory, f"directory cannot be read ({exc.strerror or exc})"
            return
        for name in names:
            if name.startswith("."):
                continue
            path = directory / name
            if path.is_dir():
                real = os.path.realpath(path)
                if real in seen:
                    yield path, (
                        "a link to a directory that is read already (a loop of links): not read again"
                        if path.is_symlink() else "a directory read already through a link to it: not read again"
                    )
                    continue
                seen.add(real)
                yield from walk(path)
            else:
                yield path, not_a_file_reason(path)

    yield from walk(root)


def not_a_file_reason(path: Path) -> str | None:
    """Why `path`, which exists or is a link, cannot be read as an input file; None if it can."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return f"a symbolic link to nothing (its target {os.readlink(path)} does not exist)"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    if kind == "a named pipe":  # what a pipe holds can come on standard input
        return f"{kind}, not a file: not read (give a pipe's data on standard input: newsdedup ingest - < PIPE)"
    return f"{kind}, not a file: not read"


def _jsonl_lines(path: Path, settings: IngestSettings) -> Iterator[tuple[int, bytes | BadInputError]]:
    """(line number, raw line) of a JSON Lines file, streamed; an over-long line is an error value.

    A plain file is read line by line whatever its size; a .gz file may not expand past
    ingest.max_decompressed_bytes, counting the lines skipped for being too long, so a gzip
    bomb costs bounded time as well as bounded memory.
    """
    compressed = path.name.lower().endswith(".gz")
    try:
        if compressed:
            with path.open("rb") as raw:
                magic = raw.read(2)
                if magic and magic != _GZIP_MAGIC:
                    yield 1, DecodeError(_NOT_GZIP)
                    return
        handle: io.BufferedIOBase = gzip.open(path, "rb") if compressed else path.open("rb")  # type: ignore[assignment]
    except OSError as exc:
        yield 1, DecodeError("cannot read file", str(exc))
        return
    yield from _lines_of(handle, compressed, settings)


def _lines_of(
    handle: io.BufferedIOBase, compressed: bool, settings: IngestSettings
) -> Iterator[tuple[int, bytes | BadInputError]]:
    """(line number, raw line) read from an open stream (see `_jsonl_lines`); closes it."""
    limit = settings.max_decompressed_bytes if compressed else None
    total = 0

    def over_limit() -> bool:
        return limit is not None and total > limit

    with handle:
        number = 0
        while True:
            try:
                line = handle.readline(settings.max_line_bytes + 1)
                if not line:
                    return
                number += 1
                total += len(line)
                if len(line) > settings.max_line_bytes and not line.endswith(b"\n"):
                    # Skip the rest of the over-long line without holding it in memory.
                    while line and not line.endswith(b"\n") and not over_limit():
                        line = handle.readline(settings.max_line_bytes)
                        total += len(line)
                    if not over_limit():
                        yield number, TooLargeError(
                            f"line is over {settings.max_line_bytes:,} bytes (ingest.max_line_bytes)"
                        )
                        continue
            except (OSError, EOFError, zlib.error) as exc:
                reason = "corrupt or truncated gzip data" if compressed else "cannot read file"
                yield number + 1, DecodeError(reason, str(exc))
                return
            if over_limit():
                yield number, TooLargeError(
                    f"decompresses to more than {limit:,} bytes (ingest.max_decompressed_bytes); "
                    "the lines before this one were read"
                )
                return
            yield number, line


def parse_record(line: bytes, first: bool = False) -> dict:
    """The JSON object on one JSON Lines line.

    UTF-8 is expected; a line in Latin-1/Windows-1252 (or with a UTF-8 BOM on the first line)
    is read too, rather than losing an article over its encoding.

    Raises:
        ParseError: the line is not JSON, nests too deeply, or is not an object.
        DecodeError: the line is binary.
    """
    if first:
        line = line.removeprefix(b"\xef\xbb\xbf")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = decode_text(line)
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise ParseError("line is not valid JSON", str(exc)[:300]) from None
    except RecursionError:
        raise ParseError("line is JSON nested too deeply to read") from None
    if not isinstance(record, dict):
        raise ParseError(f"line is JSON but not an object (got {type(record).__name__})")
    if "\\ud" in text.lower():
        record = without_lone_surrogates(record)
    return record


def _head(path: Path) -> bytes:
    """The first bytes of a file, decompressed for .gz; b"" when unreadable (the line reader
    then says why)."""
    try:
        opened = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")
        with opened as handle:
            return handle.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        return b""


def _not_json_lines(head: bytes) -> BadInputError | None:
    """Why a JSON Lines file is to be refused whole from its first bytes, if it is.

    Only a file none of whose first lines is a JSON object: one good record among junk is
    stored, and the junk rejected line by line, rather than all of it refused with the file."""
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(head) is not None
    binary = _too_many_controls(head, _BINARY_HEAD_SHARE)
    # (Lines as the reader yields them, newline included: it decides how UTF-16 bytes decode.)
    if not (utf16 or binary) or any(_is_object(line + b"\n") for line in head.split(b"\n")):
        return None
    if utf16:
        return DecodeError("UTF-16 text: JSON Lines must be UTF-8 (convert it, e.g. iconv -f UTF-16 -t UTF-8)")
    return DecodeError(
        "binary data, not JSON Lines", f"over {_BINARY_HEAD_SHARE}% control bytes in the first {len(head):,} bytes"
    )


def _is_object(line: bytes) -> bool:
    try:
        parse_record(line)
    except BadInputError:
        return False
    return True


def jsonl_documents(path: Path, ref: str, settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """One RawDocument per JSON object line of `path`; blank lines are skipped, bad lines rejected.

    A file that is plainly not JSON Lines (binary, UTF-16) is one reject, not one per line.
    """
    yield from _records(_head(path), lambda: _jsonl_lines(path, settings), ref, str(path), "empty file (only blank lines)")


def stdin_documents(settings: IngestSettings, stream: io.RawIOBase | io.BufferedIOBase | None = None) -> Iterator[RawDocument | Rejected]:
    """One RawDocument per JSON object line of standard input (or `stream`), plain or gzipped,
    read as it arrives: a pipe of any length costs one batch of memory."""
    raw = stream if stream is not None else sys.stdin.buffer
    buffered: io.BufferedReader = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    compressed = buffered.peek(2)[:2] == _GZIP_MAGIC
    # (A peek shows the first bytes without taking them from a pipe that cannot be rewound.)
    handle = io.BufferedReader(gzip.GzipFile(fileobj=buffered, mode="rb"), _HEAD_BYTES) if compressed else buffered  # type: ignore[arg-type]
    try:
        head = handle.peek(_HEAD_BYTES)[:_HEAD_BYTES]
    except (OSError, EOFError, zlib.error):
        head = b""  # the line reader says what is wrong
    yield from _records(head, lambda: _lines_of(handle, compressed, settings), STDIN_REF, STDIN_ORIGIN,
                        "standard input was empty (only blank lines, or nothing)")


def _records(head: bytes, lines, ref: str, origin: str, empty_reason: str) -> Iterator[RawDocument | Rejected]:
    """The documents of a JSON Lines input whose first bytes are `head` and whose numbered lines
    `lines()` gives; `origin` is what rejects name as their input."""
    refused = _not_json_lines(head)
    if refused is not None:
        yield Rejected(ref, STAGE, refused.reason, refused.detail, origin)
        return
    # An input of only blank lines is one reject; an input with any line in it is accounted for
    # by its lines, so it is never rejected twice.
    accounted = False
    bad_in_a_row = 0
    for number, line in lines():
        line_ref = f"{ref}:{number}"
        if isinstance(line, BadInputError):
            accounted = True
            yield Rejected(line_ref, STAGE, line.reason, line.detail, origin)
            continue
        if not line.strip():
            continue
        accounted = True
        try:
            record = parse_record(line, first=number == 1)
        except BadInputError as exc:
            bad_in_a_row += 1
            if bad_in_a_row > _MAX_BAD_LINES_IN_A_ROW:
                yield Rejected(
                    line_ref, STAGE,
                    f"more than {_MAX_BAD_LINES_IN_A_ROW:,} unreadable lines in a row: the rest of the file "
                    "was not read (is it JSON Lines?)",
                    exc.reason, origin,
                )
                return
            yield Rejected(line_ref, STAGE, exc.reason, exc.detail, origin)
            continue
        bad_in_a_row = 0
        yield RawDocument(ref=line_ref, kind="record", fields=record, source_path=origin)
    if not accounted:
        yield Rejected(ref, STAGE, empty_reason, "", origin)


def file_documents(path: Path, ref: str, settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """The raw documents in one file (one, or one per line for JSON Lines).

    Each carries the file's absolute path as its input, so `ingest --retry-rejects` can find
    the file again from any working directory.
    """
    path = Path(os.path.abspath(path))
    kind = kind_of(path)
    listing = next((suffix for suffix in LISTING_SUFFIXES if path.name.lower().endswith(suffix)), None)
    if kind is None and listing:
        # Found in a directory: a saved feed or sitemap is not fetched from unless asked by name.
        yield Rejected(
            ref, STAGE,
            f"not read from a directory: a {listing} file is read as a feed or sitemap, whose "
            "links are fetched, only when named on its own (newsdedup ingest FILE, or --kind feed / --kind sitemap)",
            f"file type {listing}", str(path),
        )
        return
    if kind is None:
        yield Rejected(
            ref, STAGE, f"unsupported file type (expected one of {', '.join(SUPPORTED)})", path.suffix, str(path)
        )
        return
    if kind == "jsonl":
        try:
            size = path.stat().st_size
        except OSError as exc:
            yield Rejected(ref, STAGE, "cannot read file", str(exc), str(path))
            return
        if size == 0:
            yield Rejected(ref, STAGE, "empty file", "", str(path))
            return
        yield from jsonl_documents(path, ref, settings)
        return
    try:
        data = read_capped(path, settings)
    except BadInputError as exc:
        yield Rejected(ref, STAGE, exc.reason, exc.detail, str(path))
        return
    except OSError as exc:
        yield Rejected(ref, STAGE, "cannot read file", str(exc), str(path))
        return
    yield RawDocument(ref=ref, kind=kind, body=data, source_path=str(path))


def is_url(location: str) -> bool:
    """True for anything with a scheme (http, https, and schemes that will be refused)."""
    return "://" in location


def missing_locations(paths: Sequence[str]) -> list[str]:
    """The local paths among `paths` that do not exist (URLs are not checked here).

    A run given only missing paths is a mistake to report, not a run with rejects: the CLI
    refuses it, and the flow fails, so a scheduled source whose directory is gone shows as a
    failed run in the UI. A missing path beside others is a reject and the run goes on."""
    return [path for path in paths if not is_url(path) and path != STDIN and not os.path.exists(path)]


def discover(paths: list[str], settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """Every raw document under `paths` (files, or directories searched recursively), in a stable order.

    A file given directly is named by its path as given; a file found in a directory by its path
    relative to that directory.
    """
    for given in paths:
        if given == STDIN:
            yield from stdin_documents(settings)
            continue
        root = Path(given)
        if root.is_dir():
            for path, problem in entries_under(root):
                ref = path.relative_to(root).as_posix()
                if problem is None:
                    yield from file_documents(path, ref, settings)
                else:
                    yield Rejected(ref, STAGE, problem, "", os.path.abspath(path))
        elif root.is_file():
            yield from file_documents(root, given, settings)
        elif os.path.lexists(given):
            yield Rejected(given, STAGE, not_a_file_reason(root) or "cannot be read", "", given)
        else:
            yield Rejected(given, STAGE, "no such file or directory", "", given)
