"""Normalization: one form of text for matching, boilerplate out, display text untouched."""

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline import normalize


@given(st.text())
@hsettings(max_examples=300)
def test_matching_text_is_idempotent(text):
    once = normalize.matching_text(text)
    assert normalize.matching_text(once) == once


@given(st.text())
@hsettings(max_examples=200)
def test_matching_text_has_one_form_of_quotes_dashes_and_spaces(text):
    out = normalize.matching_text(text)
    assert not any(ch in out for ch in "\u2018\u2019\u201c\u201d\u2013\u2014\u00a0\n\t")
    assert "  " not in out
    assert out == out.casefold()


def test_variants_of_one_sentence_normalize_alike():
    plain = normalize.matching_text("Trump's campaign - \"nothing could be further\"")
    fancy = normalize.matching_text("TRUMP\u2019S   campaign \u2014 \u201cnothing could be further\u201d")
    assert plain == fancy


def test_boilerplate_lines_are_left_out_of_matching_text():
    text = "\n".join(
        [
            "The senator said the vote would go ahead on Tuesday as planned.",
            "(Photo credit should read NICHOLAS KAMM/AFP/Getty Images)",
            "Update 2:01 p.m.",
            "Copyright 2018 The Associated Press. All rights reserved.",
            "Sign up for our morning newsletter",
            "Officials expect a close result in the runoff.",
        ]
    )
    out = normalize.matching_text(text)
    assert "senator said" in out and "close result" in out
    for gone in ("photo credit", "2:01", "copyright", "newsletter"):
        assert gone not in out


def test_a_long_paragraph_mentioning_a_newsletter_is_kept():
    paragraph = (
        "The company said its weekly newsletter, which reaches two million readers across the "
        "country, had been used by the campaign to spread claims that officials later said were "
        "false, and that it would review how political advertising is approved before the election."
    )
    assert "weekly newsletter" in normalize.matching_text(paragraph)


def test_date_marker_gives_the_date_and_the_rest_of_the_line():
    assert normalize.date_marker(" date 2020-04-02 The Trump campaign sent") == ("2020-04-02", "The Trump campaign sent")
    assert normalize.date_marker("Trump campaign sends letter") is None


def test_words_keep_inner_apostrophes_and_hyphens():
    assert normalize.words("trump's run-off in the u.s. senate") == ["trump's", "run-off", "in", "the", "u.s", "senate"]


def test_display_text_keeps_what_was_published():
    published = "\u201cNothing could be further from the truth,\u201d he said \u2014 twice.\r\n\r\n\r\nNext\x00 line"
    shown = normalize.display_text(published)
    assert shown == "\u201cNothing could be further from the truth,\u201d he said \u2014 twice.\n\nNext line"


# The fast paths of normalize (boilerplate found through literals, steps skipped when they
# would change nothing) must give what the plain definitions give.
_BOILERPLATE_BITS = [
    "Photo credit", "(PHOTO", "photo: x", "Photograph: ", "image source", "Getty Images", "AFP Photo",
    "AP photo", "/ Reuters", "REUTERS", "(Reuters)", "copyright", "\u00a9", "All  rights\treserved",
    "Updated 12:30", "update:", "| Updated:", "Published: 2", "posted on 3", "Last\u00a0Modified 5",
    "NEWSLETTER", "sign up for", "SIGN\u2003UP now", "Subscribe", "subscribe today", "read more",
    "Related", "see also", "more on this", "recommended", "Advertisement", "Follow us", "follow @x",
    "click here", "share this story", "This article was updated", "this story has been corrected",
    "s\u0131gn up for", "\u017fign up here", "Upd\u0130ted: 1", "\u212aeep reading", "the senator said",
    " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u2019", "`", "\u2014", "\u00a0", "\u200b", "\x85", "\u2028", "1", ":",
]


def _plain_story_lines(text: str) -> list[str]:
    return [line.strip() for line in normalize.unified(text).split("\n") if not normalize.is_boilerplate(line)]


@given(st.lists(st.one_of(st.sampled_from(_BOILERPLATE_BITS), st.text(max_size=4)), max_size=40).map("".join))
@hsettings(max_examples=500)
def test_story_lines_drop_exactly_the_lines_is_boilerplate_flags(text):
    assert normalize.story_lines(text) == _plain_story_lines(text)


def test_every_boilerplate_alternative_is_found_in_a_longer_text():
    body = "The senator said the vote would go ahead on Tuesday as planned."
    for bit in _BOILERPLATE_BITS:
        text = f"{body}\n{bit} 2:01\n{body}\n {bit.lower()}\n{body}"
        assert normalize.story_lines(text) == _plain_story_lines(text), bit


def test_case_traps_are_every_non_ascii_character_ignorecase_matches_with_an_ascii_letter():
    import re

    every = "".join(chr(code) for code in range(0x80, 0x110000) if not 0xD800 <= code < 0xE000)
    letters = re.compile("|".join("abcdefghijklmnopqrstuvwxyz"), re.IGNORECASE)
    found = set(letters.findall(every)) | {ch for ch in every if len(ch.lower()) != 1}
    assert found == set(normalize._CASE_TRAPS.pattern[1:-1])


def test_count_words_stops_at_the_limit_and_is_exact_below_it():
    text = "one two three four five"
    assert [normalize.count_words(text, limit) for limit in (0, 3, 5, 9)] == [0, 3, 5, 5]


@pytest.mark.parametrize(
    "title, site, expected",
    [
        ("Remake serie animata - Remember 80/90 - Memorabilia anni 80/90", "Remember 80/90 - Memorabilia anni 80/90",
         "Remake serie animata"),
        ("Kindle for PCを | ノート100YEN.com", "ノート100YEN.com", "Kindle for PCを"),
        ("THE DAILY PLANET  |  Storm hits the coast", "The Daily Planet", "Storm hits the coast"),
        ("Storm hits the coast — Daily Planet", "daily  planet", "Storm hits the coast"),
        ("Daily Planet", "Daily Planet", "Daily Planet"),  # nothing but the name: kept
        ("Planet - Storm hits", "Daily Planet", "Planet - Storm hits"),  # not the whole name
        ("Storm hits the coast", None, "Storm hits the coast"),
        (None, "Daily Planet", None),
    ],
)
def test_a_titles_site_name_part_is_left_out_of_matching(title, site, expected):
    assert normalize.title_without_site(title, site) == expected


@given(st.text(max_size=40), st.text(max_size=15))
def test_leaving_out_the_site_name_keeps_a_nonempty_part_of_the_title(title, site):
    kept = normalize.title_without_site(title, site)
    assert kept == title or (kept and " ".join(kept.split()).casefold() in " ".join(title.split()).casefold())
