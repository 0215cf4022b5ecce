"""Where raw documents come from: files and directories of text, HTML and JSON Lines.

Reading never raises for bad input: an input that cannot be read is yielded as `Rejected`,
so every input is accounted for.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import zlib
from pathlib import Path
from typing import Iterator

from .errors import BadInputError, DecodeError, EmptyInputError, ParseError, TooLargeError
from .models import RawDocument, Rejected
from .settings import IngestSettings

log = logging.getLogger(__name__)

STAGE = "read"
TEXT_SUFFIXES = (".txt",)
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
SUPPORTED = TEXT_SUFFIXES + HTML_SUFFIXES + JSONL_SUFFIXES
# cp1252 leaves these five bytes undefined: a file that needs them is not Windows/Latin-1 text.
_UNDEFINED_CP1252 = frozenset(b"\x81\x8d\x8f\x90\x9d")
_CONTROL_BYTES = frozenset(range(0, 9)) | frozenset(range(14, 32)) | {11, 12, 127}


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


def decode_text(data: bytes) -> str:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252.

    Raises:
        DecodeError: the bytes are binary (control bytes, NULs) or in no encoding we accept.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DecodeError("not valid UTF-16 text despite its byte-order mark", str(exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = str(exc)
    sample = data[:65536]
    controls = sum(1 for byte in sample if byte in _CONTROL_BYTES)
    if b"\x00" in sample or controls > len(sample) // 100:
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
        data = gunzip_capped(data, settings.max_decompressed_bytes)
        if not data:
            raise EmptyInputError("empty file once decompressed")
    return data


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """Decompress gzip data, stopping at `limit` bytes so a gzip bomb cannot exhaust memory.

    Raises:
        TooLargeError: the data expands past `limit`.
        DecodeError: the data is not gzip, or is truncated or corrupt.
    """
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


def _files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def _jsonl_lines(path: Path, settings: IngestSettings) -> Iterator[tuple[int, bytes | BadInputError]]:
    """(line number, raw line) of a JSON Lines file, streamed; an over-long line is an error value."""
    if path.name.lower().endswith(".gz"):
        handle: io.BufferedIOBase = gzip.open(path, "rb")  # type: ignore[assignment]
    else:
        handle = path.open("rb")
    total = 0
    with handle:
        number = 0
        while True:
            try:
                line = handle.readline(settings.max_line_bytes + 1)
            except (OSError, EOFError, zlib.error) as exc:
                yield number + 1, DecodeError("corrupt or truncated gzip data", str(exc))
                return
            if not line:
                return
            number += 1
            total += len(line)
            if total > settings.max_decompressed_bytes:
                yield number, TooLargeError(
                    f"file is over {settings.max_decompressed_bytes:,} bytes (ingest.max_decompressed_bytes)"
                )
                return
            if len(line) > settings.max_line_bytes and not line.endswith(b"\n"):
                # Skip the rest of the over-long line without holding it in memory.
                while line and not line.endswith(b"\n"):
                    line = handle.readline(settings.max_line_bytes)
                yield number, TooLargeError(
                    f"line is over {settings.max_line_bytes:,} bytes (ingest.max_line_bytes)"
                )
                continue
            yield number, line


def jsonl_documents(path: Path, ref: str, settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """One RawDocument per JSON object line of `path`; blank lines are skipped, bad lines rejected."""
    seen_content = False
    for number, line in _jsonl_lines(path, settings):
        line_ref = f"{ref}:{number}"
        if isinstance(line, BadInputError):
            yield Rejected(line_ref, STAGE, line.reason, line.detail, str(path))
            continue
        if not line.strip():
            continue
        seen_content = True
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            yield Rejected(line_ref, STAGE, "line is not valid JSON", str(exc)[:300], str(path))
            continue
        if not isinstance(record, dict):
            yield Rejected(
                line_ref, STAGE, f"line is JSON but not an object (got {type(record).__name__})", "", str(path)
            )
            continue
        yield RawDocument(ref=line_ref, kind="record", fields=record, source_path=str(path))
    if not seen_content:
        yield Rejected(ref, STAGE, "empty file", "", str(path))


def file_documents(path: Path, ref: str, settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """The raw documents in one file (one, or one per line for JSON Lines)."""
    kind = kind_of(path)
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


def discover(paths: list[str], settings: IngestSettings) -> Iterator[RawDocument | Rejected]:
    """Every raw document under `paths` (files, or directories searched recursively), in a stable order.

    A file given directly is named by its path as given; a file found in a directory by its path
    relative to that directory.
    """
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for path in _files_under(root):
                yield from file_documents(path, path.relative_to(root).as_posix(), settings)
        elif root.is_file():
            yield from file_documents(root, given, settings)
        else:
            yield Rejected(given, STAGE, "no such file or directory", "", given)
