"""The exceptions the pipeline raises: bad input is data, everything else stops the run."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors that stop a run; the message is meant for the user."""

    exit_code = 1


class ConfigError(PipelineError):
    """The configuration is wrong: an unknown key, a bad type, a missing file."""

    exit_code = 3


class StoreError(PipelineError):
    """The story database cannot be opened, read or written."""

    exit_code = 4


class DamagedDatabaseError(StoreError):
    """The story database's file is damaged: SQLite finds its pages malformed, or tables this
    version needs are gone. (`newsdedup check` reports it as a finding.)"""


class WorkerError(PipelineError):
    """A process preparing batches died (killed, or out of memory): what was committed is stored."""

    exit_code = 6


class SourceError(PipelineError):
    """A run over web sources read nothing: none of them answered (the rejects say why)."""

    exit_code = 7


class UsageError(PipelineError):
    """The command was called wrongly (a missing input, a story that does not exist)."""

    exit_code = 2


class BadInputError(Exception):
    """One input cannot become an article. It is recorded as a reject; the run goes on.

    `reason` is a short plain sentence for people; `detail` may carry the technical cause.
    """

    def __init__(self, reason: str, detail: str = "", article_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.article_id = article_id  # the article's id, when it was known before the input was refused

    def __reduce__(self):  # picklable with every argument (Prefect may serialise task errors)
        return (type(self), (self.reason, self.detail, self.article_id))


class EmptyInputError(BadInputError):
    """The input holds nothing (empty file, blank record)."""


class DecodeError(BadInputError):
    """The bytes are not text in any encoding we accept, or the file is corrupt."""


class ParseError(BadInputError):
    """The input is text but not of its declared format (bad JSON, broken feed)."""


class NoArticleError(BadInputError):
    """The input parses but holds no article (navigation page, a stub, a too-short text)."""


class TooLargeError(BadInputError):
    """The input is larger than the configured cap."""


class FetchRefusedError(BadInputError):
    """A URL newsdedup will not fetch: another scheme, a private address, robots.txt, too many redirects."""


class HttpStatusError(BadInputError):
    """The server answered with a status that will not change on retry (4xx, or a 5xx after retries)."""


class ContentTypeError(BadInputError):
    """The response is not of a type this source kind can read (a PDF where a page was expected)."""


class TransientFetchError(Exception):
    """A fetch failed in a way that may pass: a timeout, a 5xx, a refused connection.

    Not a BadInputError: the caller retries (Prefect task retries), and only when retries
    are exhausted turns it into a reject with `fetch.unreachable`.
    """

    def __init__(self, url: str, reason: str, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason}: {url}")
        self.url = url
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s  # the server's Retry-After, when it sent one

    def __reduce__(self):  # picklable with every argument (Prefect may serialise task errors)
        return (type(self), (self.url, self.reason, self.detail, self.retry_after_s))
