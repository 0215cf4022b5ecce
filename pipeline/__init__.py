"""newsdedup: turn a stream of news articles into stories, one event each."""

__version__ = "0.1.0"
