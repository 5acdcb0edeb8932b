"""The web app's languages: gettext catalogues (Babel, compiled in memory from the .po files
shipped in node/web/locale/), the choice of language for a request, and dates and numbers
written the way each locale writes them."""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from node.config import UI_LANGS
from protocol import limits

LOCALE_DIR = Path(__file__).parent / "locale"
RTL = frozenset({"ar"})
NAMES = {"en": "English", "fr": "Français", "ar": "العربية"}  # each in its own language


def translations(lang: str) -> NullTranslations:
    """The catalogue of `lang` (English is the source language: no catalogue)."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    mo = io.BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return Translations(mo)


def negotiate(accept_language: str, default: str) -> str:
    """The first language of an Accept-Language header that the app has, else `default`."""
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        wanted.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(wanted):
        base = tag.split("-")[0]
        if base in UI_LANGS:
            return base
    return default


class Formats:
    """Dates and numbers in one locale (UTC: the node and its reader may be far apart).

    Babel takes ~0.1 ms a date; a page shows dozens and the next view the same ones again,
    so each instance keeps the last UI_FORMATS_KEPT it wrote."""

    def __init__(self, lang: str) -> None:
        self.locale = Locale.parse(lang)
        self.rtl = lang in RTL
        kept = functools.lru_cache(maxsize=limits.UI_FORMATS_KEPT, typed=True)
        self._when = kept(self._format_when)
        self._number = kept(self._format_number)

    def when(self, ms: object) -> str:
        if not isinstance(ms, int | float) or not ms:
            return "—"
        return self._when(ms)

    def duration(self, ms: object) -> str:
        """A length of time (an age, a target) as the locale says it: "2 hours"."""
        if not isinstance(ms, int | float):
            return "—"
        return format_timedelta(timedelta(milliseconds=ms), threshold=1.5, locale=self.locale)

    def number(self, value: object) -> str:
        if not isinstance(value, int | float):
            return "—"
        return self._number(value)

    def _format_when(self, ms: float) -> str:
        at = datetime.fromtimestamp(ms / 1000, UTC)
        return format_datetime(at, "medium", tzinfo=UTC, locale=self.locale) + " UTC"

    def _format_number(self, value: float) -> str:
        return format_decimal(value, locale=self.locale)
