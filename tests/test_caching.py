"""The prepare task's cache key: content, settings and code decide it; nothing else."""

from __future__ import annotations

from pipeline.models import RawDocument, Rejected


def _key(items, settings) -> str:
    from flows.caching import prepare_cache_key

    return prepare_cache_key(None, {"items": items, "settings": settings})


def test_same_content_same_key_and_any_change_a_new_one(settings):
    doc = RawDocument("a.txt", "text", b"Title\n\nBody text", source_path="/x/a.txt")
    rejected = Rejected("b.txt", "read", "empty file", "", "/x/b.txt")
    key = _key([doc, rejected], settings)
    assert key == _key([RawDocument("a.txt", "text", b"Title\n\nBody text", source_path="/x/a.txt"), rejected], settings)
    assert key != _key([RawDocument("a.txt", "text", b"Title\n\nBody text!", source_path="/x/a.txt"), rejected], settings)
    assert key != _key([RawDocument("a.txt", "text", b"Title\n\nBody text", url="https://e.org/a", source_path="/x/a.txt"), rejected], settings)
    assert key != _key([doc], settings)
    changed = settings.model_copy(update={"matching": settings.matching.model_copy(update={"num_perm": 64})})
    assert key != _key([doc, rejected], changed)


def test_code_version_covers_the_pipeline_sources():
    from flows.caching import CODE_VERSION, _code_version

    assert CODE_VERSION == _code_version() and len(CODE_VERSION) == 16
