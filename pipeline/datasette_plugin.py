"""A Datasette plugin for the story database, registered by `newsdedup browse` only."""

from __future__ import annotations

from datasette import hookimpl
from markupsafe import Markup, escape

# Views whose story_id cells link to that story's articles (Datasette links only real foreign keys).
STORY_LINK_VIEWS = frozenset({"story_overview", "story_articles", "near_duplicate_pairs"})


@hookimpl
def render_cell(value, column, table, database, datasette):
    """A story id in a view opens the story: its articles, canonical first, by similarity."""
    if column != "story_id" or table not in STORY_LINK_VIEWS or not isinstance(value, int):
        return None
    url = datasette.urls.table(database, "story_articles") + f"?story_id={value}&_sort_desc=similarity"
    return Markup(f'<a href="{escape(url)}" title="open story {value}">{value}</a>')


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@hookimpl
def asgi_wrapper(datasette):
    """Refuse every request that could write, at the door: `newsdedup browse` only reads. A
    POST to Datasette's write API otherwise ended in a 500 and a traceback on the console (a QA
    pass), Datasette failing on its own error path for a database it opened read-only."""
    def wrap(app):
        async def read_only(scope, receive, send):
            if scope["type"] == "http" and scope.get("method", "GET") not in _READS:
                await send({
                    "type": "http.response.start", "status": 405,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD, OPTIONS")],
                })
                await send({"type": "http.response.body", "body": b"newsdedup browse is read-only: nothing here can be changed\n"})
                return
            await app(scope, receive, send)
        return read_only
    return wrap
