"""The web app's catalogues: the template (messages.pot) holds every string the templates
say, French translates all of them, Arabic at least the navigation, home and sign-in pages;
placeholders survive translation. No browser needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from node.web import i18n

WEB = Path(i18n.__file__).parent
TEMPLATES = WEB / "templates"


def _extracted(*names: str) -> set[object]:
    found: set[object] = set()
    for path in sorted(TEMPLATES.glob("*.html")):
        if names and path.name not in names:
            continue
        for _, message, _, _ in extract_from_file("jinja2", path, options={"trimmed": "true"}):
            found.add(message)
    return found


def _catalog(lang: str) -> Catalog:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def _translated(catalog: Catalog) -> set[object]:
    return {
        m.id
        for m in catalog
        if m.id and not m.fuzzy and (all(m.string) if isinstance(m.string, tuple) else m.string)
    }


def test_the_template_holds_every_string_of_the_templates() -> None:
    with (WEB / "locale" / "messages.pot").open("rb") as f:
        pot = {m.id for m in read_po(f) if m.id}
    assert _extracted() == pot, "messages.pot is stale: see node/web/babel.cfg"


def test_french_is_complete() -> None:
    assert _extracted() - _translated(_catalog("fr")) == set()


def test_arabic_covers_navigation_home_and_sign_in() -> None:
    needed = _extracted("base.html", "home.html", "_state.html", "signed_out.html")
    assert needed - _translated(_catalog("ar")) == set()


# Every page issue 13 names: guides, know-who, alerts, peers, status, sign-in and staff, the
# wipe, errors and the flash messages. (Pages added later join this list once translated.)
ARABIC_PAGES = (
    "_error.html", "_flash.html", "_guide_rows.html", "_peername.html", "_state.html",
    "alerts.html", "base.html", "enrol.html", "error.html", "guide.html", "guide_form.html",
    "guides.html", "home.html", "knowwho.html", "peer.html", "peers.html", "signed_out.html",
    "signin.html", "staff.html", "status.html", "wipe.html", "wiped.html",
    "_act_now.html", "_duty.html", "_plan_state.html", "checkins.html", "help.html",
    "help_request.html",
)  # fmt: skip


def test_arabic_translates_every_page_of_the_app() -> None:
    assert _extracted(*ARABIC_PAGES) - _translated(_catalog("ar")) == set()
    assert all((TEMPLATES / name).exists() for name in ARABIC_PAGES)


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_placeholders_survive_translation(lang: str) -> None:
    for message in _catalog(lang):
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(re.findall(r"%\((\w+)\)s", ids[-1]))
        for string in strings:
            assert set(re.findall(r"%\((\w+)\)s", string)) == wanted, message.id


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_catalogue_compiles_and_translates(lang: str) -> None:
    assert i18n.translations(lang).gettext("Home") != "Home"


def test_language_negotiation() -> None:
    assert i18n.negotiate("fr-CA,fr;q=0.9,en;q=0.8", "en") == "fr"
    assert i18n.negotiate("de-DE,ar;q=0.5,fr;q=0.4", "en") == "ar"
    assert i18n.negotiate("de, ja;q=0.9", "fr") == "fr"
    assert i18n.negotiate("en;q=0.1, fr;q=0.9", "ar") == "fr"
    assert i18n.negotiate("fr;q=abc, xx", "en") == "en"


def test_dates_and_numbers_per_locale() -> None:
    assert i18n.Formats("fr").number(12345.5) == "12\u202f345,5"
    assert i18n.Formats("en").number(12345.5) == "12,345.5"
    assert i18n.Formats("fr").when(1_796_000_000_000) == "30 nov. 2026, 00:53:20 UTC"
