"""Normalization: one form of text for matching, boilerplate out, display text untouched."""

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
