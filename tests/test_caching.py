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


def _aged(path, days: float, size: int = 10):
    import os
    import time

    path.write_bytes(b"x" * size)
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_pruning_removes_only_expired_prepare_records(tmp_path):
    from flows.caching import PREPARE_CACHE_EXPIRATION, prune_expired_results

    expiry_days = PREPARE_CACHE_EXPIRATION.total_seconds() / 86400
    old = _aged(tmp_path / "prepare-aaa", expiry_days + 1, size=300)
    also_old = _aged(tmp_path / "prepare-bbb", expiry_days + 30, size=200)
    fresh = _aged(tmp_path / "prepare-ccc", expiry_days - 0.5)
    just_expired = _aged(tmp_path / "prepare-ddd", expiry_days + 0.5 / 24)  # inside the grace hour
    foreign = _aged(tmp_path / "some-other-flow-result", expiry_days + 10)
    (tmp_path / "prepare-dir").mkdir()

    assert prune_expired_results(tmp_path) == (2, 500)
    assert not old.exists() and not also_old.exists()
    assert fresh.exists() and just_expired.exists() and foreign.exists() and (tmp_path / "prepare-dir").is_dir()
    assert prune_expired_results(tmp_path) == (0, 0)
    assert prune_expired_results(tmp_path / "missing") == (0, 0)


def test_pruning_removes_expired_kept_batch_files_too(tmp_path):
    from flows.caching import PREPARE_CACHE_EXPIRATION, kept_batches_directory, prune_expired_results

    expiry_days = PREPARE_CACHE_EXPIRATION.total_seconds() / 86400
    kept = kept_batches_directory(tmp_path)
    record = _aged(tmp_path / "prepare-kept-aaa", expiry_days + 1, size=100)
    old = _aged(kept / "batch-old.pickle", expiry_days + 1, size=400)
    fresh = _aged(kept / "batch-new.pickle", expiry_days - 0.5)
    other = _aged(kept / "notes.txt", expiry_days + 10)

    assert prune_expired_results(tmp_path) == (2, 500)
    assert not record.exists() and not old.exists() and fresh.exists() and other.exists()


def test_prepared_batches_round_trip_through_the_result_serializer_as_text(settings, seeds_dir):
    from prefect.serializers import Serializer

    from flows.caching import PreparedBatchSerializer
    from pipeline.ingest import batches, prepare_batch

    batch = prepare_batch(next(batches([str(seeds_dir)], settings)), settings)
    serializer = PreparedBatchSerializer()
    blob = serializer.dumps(batch)
    blob.decode("ascii")  # stored inside Prefect's JSON result record
    assert serializer.loads(blob) == batch
    # Prefect finds the serializer again by its type when it reads a cached result back.
    found = Serializer(type="newsdedup-prepared-batch")
    assert isinstance(found, PreparedBatchSerializer) and found.loads(blob) == batch
