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


class UsageError(PipelineError):
    """The command was called wrongly (a missing input, a story that does not exist)."""

    exit_code = 2


class BadInputError(Exception):
    """One input cannot become an article. It is recorded as a reject; the run goes on.

    `reason` is a short plain sentence for people; `detail` may carry the technical cause.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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
