"""One typed settings object, read from config/*.toml and NEWSDEDUP_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSettings(_Section):
    # Inputs are prepared and written in batches: one transaction and one Prefect task pair
    # per batch, so a 20,000-article file makes 20 task runs, not 20,000.
    batch_size: int = Field(1000, ge=1)
    # Shorter texts are teasers, captions or errors, not articles (the shortest real article
    # in the development corpus has 64 words).
    min_words: int = Field(25, ge=1)
    # A larger file is refused rather than read: no news article is 20 MB of text.
    max_file_bytes: int = Field(20_000_000, ge=1)
    # JSON Lines files are streamed; one line longer than this is rejected on its own.
    max_line_bytes: int = Field(5_000_000, ge=1)
    # Decompressed size cap for .gz inputs (gzip bombs expand 1000x).
    max_decompressed_bytes: int = Field(100_000_000, ge=1)
    # A longer extracted text is rejected: ten times the longest article in the development
    # corpus (23,304 characters). Matching holds ~200 bytes per character while it works
    # (a 20 MB text took 3.4 GB and 49 s), so this cap is what keeps memory bounded.
    max_text_chars: int = Field(200_000, ge=1)
    # A batch also closes when its raw inputs reach this size: 1,000 files near the 20 MB file
    # cap would otherwise sit in memory together (20 GB) before the batch is prepared.
    max_batch_bytes: int = Field(50_000_000, ge=1)
    # Reading standard input (`ingest -`), a batch is also stored once no line came for this many
    # seconds: a slow pipe (tail -f, a trickling export) has its records stored as they come,
    # not held until 1,000 have arrived.
    idle_flush_s: float = Field(2.0, gt=0)
    # trafilatura's precision mode: mean token F1 0.970 against 0.959 without it on the 181
    # evaluation pages (docs/extraction.md); a text it cuts to a fragment is extracted again
    # without it (pipeline/extract.py), so precision never costs a whole article.
    html_favor_precision: bool = True


class MatchingSettings(_Section):
    # datasketch 2.0 changed its default hashing; the scheme is stored with every signature.
    scheme: Literal["affine32"] = "affine32"
    num_perm: int = Field(128, ge=16, le=1024)
    seed: int = 1
    # Near-duplicates: word shingles of this many words.
    shingle_size: int = Field(3, ge=1, le=9)
    # LSH threshold for near-duplicate candidates, and the Jaccard over shingle sets that
    # verifies them. See docs/quality.md for the measurement.
    dup_lsh_threshold: float = Field(0.3, gt=0, lt=1)
    dup_jaccard: float = Field(0.5, gt=0, le=1)
    # Story level: the number of salient terms per article that go into its MinHash.
    salient_terms: int = Field(30, ge=5)
    # Terms in the title count this many times more than in the body.
    title_boost: float = Field(8.0, ge=1)
    # Terms scored per article (and counted in the corpus document frequencies).
    scored_terms: int = Field(200, ge=10)
    # Terms kept in the unit vector used for verification.
    vector_terms: int = Field(80, ge=10)
    # IDF = log((N + prior) / (df + 1)): the prior keeps tiny corpora from cancelling shared words.
    idf_prior_documents: float = Field(50.0, ge=1)
    # LSH over salient-term sets, tuned for recall: false negatives cost 9x false positives.
    story_lsh_threshold: float = Field(0.1, gt=0, lt=1)
    story_lsh_weights: tuple[float, float] = (0.1, 0.9)
    # Per LSH key, at most this many stored articles are looked at; and per article, at most
    # this many candidate stories (those proposed by the most bands) are verified. Both keep
    # a batch's cost flat as the database grows.
    story_bucket_cap: int = Field(32, ge=1)
    story_candidates: int = Field(10, ge=1)
    # Of those, a candidate proposed by fewer bands than this share of the best one is not
    # verified. Measured on the 100k benchmark's increment: the story an article joined was the
    # most proposed candidate 98% of the time and never had under 0.21 of its votes, while half
    # of all candidates had under 0.23. At 0.2 a batch reads and verifies about a third fewer
    # stored stories; F1 0.939 at once and 0.9296 shuffled on the development corpus (was
    # 0.939, 0.9295), 0.9375 on the 20,000 benchmark corpus (was 0.9370).
    story_candidate_share: float = Field(0.2, ge=0, le=1)
    # Cosine similarity between an article and a story that verifies the join.
    story_similarity: float = Field(0.07, gt=0, le=1)
    # Two stories merge when their centroids are at least this similar.
    merge_similarity: float = Field(0.1, gt=0, le=1)
    # Articles further apart than this (in days) from a story's dates are penalised.
    time_window_days: int = Field(3, ge=0)
    # Similarity lost per day outside the window.
    time_decay_per_day: float = Field(0.0003, ge=0)
    # Whose word frequencies weigh an article's terms: "auto" tells each article's language by
    # its common words (pipeline/language.py; English when unclear), or a wordfreq language
    # code ("en", "de", ...) for all. See docs/quality.md, "Languages".
    language: str = "auto"

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        from .language import supported

        if value != "auto" and value not in supported():
            raise ValueError(f"{value!r} is not 'auto' or one of the languages wordfreq covers: {', '.join(supported())}")
        return value


class StoreSettings(_Section):
    db: str = "data/stories.db"
    # Seconds a writer waits for another writer's lock before giving up.
    busy_timeout_s: float = Field(120.0, ge=0)


class FetchSettings(_Section):
    """How pages, feeds and sitemaps are fetched over HTTP (pipeline/fetch.py)."""

    # An honest User-Agent names the tool and where to read about it; robots.txt rules are
    # matched against `robots_agent`.
    user_agent: str = "newsdedup/0.1 (news deduplication bot; operator contact: set fetch.user_agent)"
    robots_agent: str = "newsdedup"
    # Seconds to connect (and, separately, to resolve the host's name), and to wait for each
    # chunk; `total_timeout_s` bounds a whole response so a server dripping one byte a second
    # cannot hold a worker for ever.
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    total_timeout_s: float = Field(60.0, gt=0)
    # The largest news pages in the evaluation set are about 1.5 MB of HTML; 10 MB leaves room
    # for feeds and sitemaps (the protocol caps an uncompressed sitemap at 50 MB, rarely reached).
    max_bytes: int = Field(10_000_000, ge=1024)
    # Browsers stop at 20 redirects; news links rarely need more than 3 (tracker, http->https, www).
    max_redirects: int = Field(5, ge=0, le=20)
    # Politeness per host: at most this many requests at once, this many seconds apart
    # (a robots.txt Crawl-delay raises the delay, up to max_crawl_delay_s).
    per_domain_concurrency: int = Field(2, ge=1)
    # Page fetches under way at once across all hosts (each holds a worker thread, mostly
    # waiting on the network or its host's turn): enough for 8 hosts at full concurrency.
    max_in_flight: int = Field(16, ge=1)
    per_domain_delay_s: float = Field(1.0, ge=0)
    max_crawl_delay_s: float = Field(30.0, ge=0)
    respect_robots: bool = True
    # Transient failures (timeouts, 5xx, refused connections) are retried this many times with
    # exponential backoff starting at retry_delay_s (Prefect task retries).
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(2.0, ge=0)
    # A 429 or 5xx answer's Retry-After pauses every request to that host until then, up to
    # this long; a server that asks for a longer pause gets none of this run's requests, and
    # what it refused becomes a reject to replay later (`ingest --retry-rejects`).
    max_retry_after_s: float = Field(120.0, ge=0)
    # A sitemap index may point at sitemap indexes; deeper nesting is a loop or an accident.
    max_sitemap_depth: int = Field(3, ge=1)
    # Private, loopback and link-local addresses are refused (a feed must not make newsdedup
    # fetch from the internal network) unless the host, address or network is listed here,
    # e.g. ["127.0.0.1"] or ["10.0.0.0/8"].
    allow_private_hosts: tuple[str, ...] = ()

class RunnerSettings(_Section):
    # Where the flow's prepare tasks (extraction, fingerprinting) run: "threads" in the flow's
    # process, "processes" (a local pool: both cores), or "dask" (a Dask cluster at
    # dask_address, or a local one when it is empty). Story assignment always stays in the
    # flow's process, one ordered writer.
    kind: Literal["threads", "processes", "dask"] = "threads"
    dask_address: str = ""
    # Worker processes for "threads" (batches of 200+ inputs), "processes" and a local Dask
    # cluster (0: one per core).
    workers: int = Field(0, ge=0)


class Settings(_Section):
    ingest: IngestSettings = IngestSettings()
    matching: MatchingSettings = MatchingSettings()
    store: StoreSettings = StoreSettings()
    fetch: FetchSettings = FetchSettings()
    runner: RunnerSettings = RunnerSettings()


class Schedule(_Section):
    """When a configured source is polled: a cron expression or an interval (not both)."""

    cron: str | None = None
    interval_minutes: float | None = Field(None, gt=0)


class SourceConfig(_Section):
    """One configured source in config/sources.toml (a [[sources]] entry)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["directory", "file", "feed", "sitemap", "page"]
    location: str = Field(min_length=1)  # a path (relative to the project) or an http(s) URL
    enabled: bool = True
    schedule: Schedule | None = None


class ArchiveConfig(_Section):
    """Archiving on a schedule, the [archive] table of config/sources.toml: stories that have not
    grown for `older_than_days` move into the database `to` (`newsdedup archive`)."""

    enabled: bool = True
    to: str = Field(min_length=1)  # a path relative to the project, or absolute
    older_than_days: float = Field(gt=0)
    by: Literal["ingested", "published"] = "ingested"
    schedule: Schedule


class SourcesFile(_Section):
    sources: list[SourceConfig] = []
    archive: ArchiveConfig | None = None


def _sources_file(path: str | Path | None) -> tuple[Path, SourcesFile]:
    path = Path(path) if path is not None else CONFIG_DIR / "sources.toml"
    data = _read_toml(path)
    try:
        parsed = SourcesFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"bad sources file {path}: {problems}") from None
    return path, parsed


def load_archive(path: str | Path | None = None) -> ArchiveConfig | None:
    """The scheduled archive configured in `path` (default config/sources.toml), None when there
    is none or it is not enabled.

    Raises ConfigError naming the field at fault.
    """
    path, parsed = _sources_file(path)
    archive = parsed.archive
    if archive is None or not archive.enabled:
        return None
    if archive.schedule.cron and archive.schedule.interval_minutes:
        raise ConfigError(f"bad sources file {path}: [archive] has both cron and interval_minutes")
    if not (archive.schedule.cron or archive.schedule.interval_minutes):
        raise ConfigError(f"bad sources file {path}: [archive] needs a schedule: cron or interval_minutes")
    return archive


def load_sources(path: str | Path | None = None) -> list[SourceConfig]:
    """The sources configured in `path` (default config/sources.toml); names must be unique.

    Raises ConfigError naming the entry and field at fault.
    """
    path, parsed = _sources_file(path)
    names = [source.name for source in parsed.sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"bad sources file {path}: duplicate source names {', '.join(duplicates)}")
    for source in parsed.sources:
        if source.schedule and source.schedule.cron and source.schedule.interval_minutes:
            raise ConfigError(f"bad sources file {path}: source {source.name!r} has both cron and interval_minutes")
    return parsed.sources


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# NEWSDEDUP_* variables that are not settings (read where they apply).
_NOT_SETTINGS = {"NEWSDEDUP_CONFIG", "NEWSDEDUP_DEBUG", "NEWSDEDUP_UPDATE_SCREENSHOTS"}


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """NEWSDEDUP_MATCHING__NUM_PERM=256 becomes {"matching": {"num_perm": "256"}}.

    A value in brackets is read as a TOML array (NEWSDEDUP_FETCH__ALLOW_PRIVATE_HOSTS='["127.0.0.1"]'):
    list settings had no way in (a QA pass tried four spellings).

    Raises:
        ConfigError: a NEWSDEDUP_ variable that names no setting the way settings are named (one
            underscore where two belong was ignored without a word), or a bracketed value that
            is not a TOML array.
    """
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("NEWSDEDUP_") or name in _NOT_SETTINGS:
            continue
        if "__" not in name:
            raise ConfigError(
                f"{name} is not a newsdedup setting: settings are NEWSDEDUP_<SECTION>__<KEY>, with two underscores "
                "between section and key (e.g. NEWSDEDUP_INGEST__MIN_WORDS); the database is chosen with --db"
            )
        section, _, key = name[len("NEWSDEDUP_"):].lower().partition("__")
        if value.strip().startswith("["):
            try:
                value = tomllib.loads(f"value = {value}")["value"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{name} is not a TOML array ({exc}): write it as in the file, e.g. [0.5, 0.5]") from None
        overrides.setdefault(section, {})[key] = value
    return overrides


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a configuration file (a .toml file)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """The settings for a run: built-in defaults, then config/default.toml, then `path`, then env.

    Raises ConfigError naming the offending field when a key is unknown or a value has the
    wrong type.
    """
    data: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []  # (where, what it set), later ones winning
    default_file = CONFIG_DIR / "default.toml"
    if default_file.exists():
        data = _read_toml(default_file)
        layers.append((str(default_file), data))
    if path is None and (environ or os.environ).get("NEWSDEDUP_CONFIG"):
        path = (environ or os.environ)["NEWSDEDUP_CONFIG"]
    if path is not None:
        given = _read_toml(Path(path))
        layers.append((str(path), given))
        data = _deep_merge(data, given)
    overrides = _env_overrides(dict(environ if environ is not None else os.environ))
    data = _deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_named(err['loc'], overrides, layers)}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"bad configuration: {problems}") from None


def _field_named(location: tuple, overrides: dict[str, Any], layers: list[tuple[str, dict[str, Any]]]) -> str:
    """`ingest.batch_size`, with where it was set: the environment variable, or the file (a QA
    pass: the message named the setting, or blamed the --config file for a variable's value,
    and the reader looked in the wrong place)."""
    parts = [str(part) for part in location]
    name = ".".join(parts)
    if parts and parts[0] in overrides and (len(parts) == 1 or parts[1] in overrides[parts[0]]):
        keys = overrides[parts[0]] if len(parts) == 1 else [parts[1]]
        variables = ", ".join(f"NEWSDEDUP_{parts[0].upper()}__{key.upper()}" for key in keys)
        return f"{name} (set by {variables})"
    for where, values in reversed(layers):
        found: Any = values
        for part in parts[:2]:
            found = found.get(part) if isinstance(found, dict) else None
        if found is not None:
            return f"{name} (in {where})"
    return name
