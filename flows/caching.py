"""The cache key of the prepare task: the inputs' content, the settings and the pipeline's code.

Extraction is the slowest stage (trafilatura reads about 20 pages per second per core), and a
scheduled source is mostly the same pages every time, so a batch whose inputs, settings and
code are unchanged is read back from Prefect's result storage instead of being extracted again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import pickle
import stat
import time
from importlib import metadata
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.serializers import Serializer
from prefect.settings import get_current_settings

from pipeline.models import RawDocument, Rejected

log = logging.getLogger(__name__)

# Long enough to span a day of scheduled polls. Prefect never deletes expired results, and a
# prepared batch is about 17 MB for 1,000 articles (1.7 GB a day at 100,000 articles a day), so
# every run deletes the expired ones itself (`prune_expired_results`).
PREPARE_CACHE_EXPIRATION = timedelta(days=2)
# Deleted a little after they expire, so a run never removes a record another run's clock
# still counts as valid.
_PRUNE_GRACE = timedelta(hours=1)
_PREFIX = "prepare-"


# Third-party code whose upgrade changes what extraction and fingerprints produce.
_STAGE_LIBRARIES = ("trafilatura", "wordfreq", "datasketch", "numpy", "xxhash")


def _code_version() -> str:
    """A digest of the pipeline package's source and its stage libraries' versions.

    Changed code never reuses old results.
    """
    digest = hashlib.sha256()
    for name in _STAGE_LIBRARIES:
        try:
            digest.update(f"{name}=={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} missing;".encode())
    for path in sorted((Path(__file__).resolve().parent.parent / "pipeline").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


CODE_VERSION = _code_version()


def _item_digest(item: RawDocument | Rejected, digest: "hashlib._Hash") -> None:
    if isinstance(item, Rejected):
        digest.update(json.dumps(["rejected", item.ref, item.stage, item.reason, item.detail, item.input]).encode())
        return
    body = item.body.encode("utf-8", "surrogatepass") if isinstance(item.body, str) else item.body
    digest.update(
        json.dumps(
            ["raw", item.ref, item.kind, item.url, item.source_path, dict(item.fields)],
            sort_keys=True, default=str, ensure_ascii=False,
        ).encode()
    )
    digest.update(hashlib.sha256(body).digest())


def prepare_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The same inputs (ref, URL and content), the same settings, the same code: the same key."""
    digest = hashlib.sha256(CODE_VERSION.encode())
    digest.update(parameters["settings"].model_dump_json().encode())
    for item in parameters["items"]:
        _item_digest(item, digest)
    return "prepare-" + digest.hexdigest()


PREPARE_CACHE = CacheKeyFnPolicy(cache_key_fn=prepare_cache_key)


def kept_batch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """`prepare_cache_key` for a task whose cached result is the path of a kept batch file: a
    key of its own, so that neither task is ever handed the other's kind of result."""
    return "prepare-kept-" + prepare_cache_key(context, parameters).removeprefix("prepare-")


KEPT_BATCH_CACHE = CacheKeyFnPolicy(cache_key_fn=kept_batch_cache_key)
# Where prepared batches cached as files are kept (under Prefect's local result storage): a
# process pool's worker writes its batch here and hands back only the path (flows/ingest.py).
_KEPT_DIRECTORY = "newsdedup-prepared"


def kept_batches_directory(storage: Path | None = None) -> Path:
    """The directory of prepared batches kept as files for the cache; made when missing."""
    folder = Path(storage) if storage is not None else Path(get_current_settings().results.local_storage_path)
    kept = folder / _KEPT_DIRECTORY
    kept.mkdir(parents=True, exist_ok=True)
    return kept


class PreparedBatchSerializer(Serializer):
    """How the prepare task's results are written to Prefect's result storage.

    Prefect's default ("pickle") runs cloudpickle, then `base64.encodebytes`, which loops in
    Python over 57-byte pieces: 69 ms for a 13 MB prepared batch of 1,000 articles, in the
    flow's process, under the interpreter lock the writer needs. A prepared batch is plain
    dataclasses, so the standard library's pickle writes it, and one `b64encode` call encodes
    it (15 ms); about 65 ms less per batch in all. (Results are base64 text because Prefect
    stores them inside a JSON record.)
    """

    type: str = Field(default="newsdedup-prepared-batch", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def loads(self, blob: bytes) -> Any:
        return pickle.loads(base64.b64decode(blob))


def prune_expired_results(
    storage: Path | None = None, older_than: timedelta = PREPARE_CACHE_EXPIRATION + _PRUNE_GRACE, now: float | None = None
) -> tuple[int, int]:
    """Delete the prepare task's cached results written more than `older_than` ago from `storage`
    (by default Prefect's local result storage, `$PREFECT_HOME/storage`); (files, bytes) removed.

    Only this flow's cache records (named by `prepare_cache_key`) and the batch files kept for
    them (`kept_batches_directory`) are touched; a file another run deletes first, or cannot be
    deleted, is skipped: pruning never fails a run.
    """
    folder = Path(storage) if storage is not None else Path(get_current_settings().results.local_storage_path)
    cutoff = (time.time() if now is None else now) - older_than.total_seconds()
    removed = freed = 0
    try:
        entries = [path for path in folder.iterdir() if path.name.startswith(_PREFIX)]
    except OSError:
        return 0, 0
    try:
        # Kept batch files expire with the cache records that name them.
        entries += [path for path in (folder / _KEPT_DIRECTORY).iterdir() if path.name.startswith("batch-")]
    except OSError:
        pass
    for path in entries:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_mtime >= cutoff:
                continue
            path.unlink()
        except OSError as exc:
            log.debug("could not remove expired cache file %s: %s", path, exc)
            continue
        removed += 1
        freed += info.st_size
    return removed, freed
