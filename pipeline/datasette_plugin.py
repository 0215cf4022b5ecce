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
