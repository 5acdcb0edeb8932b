"""Know-who: the contact and vouch content schemas, their validation, query filters and ranking.

Owns what a contact's plaintext may hold (docs/spec/70-contacts-and-queries.md), the sharing
policies and the ranking formula. Pure: regions come from pycountry (ISO 3166-1/3166-2) and
languages from langcodes (BCP 47), both data-only libraries imported on first use (they cost
~80 ms at start-up); time is always an argument. It never decides who receives what: node/
does, by the rules written here.
"""

from __future__ import annotations

import enum
import math
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from protocol import limits
from protocol.encoding import Value, as_bytes, as_int, as_list, as_map, as_str, check_keys
from protocol.errors import ContactError, DecodeError

CONTACT_VERSION = 1
UID_BYTES = 16
DAY_MS = 24 * 3600 * 1000


class Share(enum.StrEnum):
    """Sharing policies (SPEC "Sharing policies"): enforced by every node holding a contact."""

    PEERS = "peers"  # the author's direct peers only; never re-shared
    NETWORK = "network"  # any node of the network may pass it on
    ON_REQUEST = "on-request"  # others see a teaser; details only by an approved introduction
    PRIVATE = "private"  # never leaves the node
    CIRCLE = "circle"  # the members of one of the author's circles; never re-shared


# The fixed kinds vocabulary. Adding a kind is a SPEC change (old nodes reject unknown kinds).
KINDS: dict[str, str] = {
    "lawyer": "lawyers and legal-aid clinics",
    "shelter": "safe houses and emergency accommodation",
    "medical": "doctors, clinics, forensic medical examination",
    "psychosocial": "counselling and trauma support",
    "digital-security": "digital-security helpdesks and device forensics",
    "relocation": "temporary relocation and evacuation support",
    "emergency-funds": "emergency grants and rapid-response funds",
    "interpreter": "interpreters and translators",
    "journalist-support": "protection for journalists and media workers",
    "hotline": "24-hour hotlines and helplines",
    "respite": "respite, rest and recuperation programmes for defenders",
}

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_EMAIL = re.compile(
    r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+"
)
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[^\s]*)?")
_SIGNAL_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,31}\.[0-9]{2,9}")
_TELEGRAM = re.compile(r"@?[A-Za-z][A-Za-z0-9_]{4,31}")
_MATRIX = re.compile(r"@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(?::[0-9]{1,5})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WORD = re.compile(r"\w+")
_SPECIALTY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _phone(value: str) -> str:
    if _E164.fullmatch(value):  # already compact: nothing for the substitution to remove
        return value
    compact = re.sub(r"[\s().-]", "", value)
    if not _E164.fullmatch(compact):
        raise ContactError("a phone number must be international: + then 7 to 15 digits")
    return compact


def _signal(value: str) -> str:
    if value.startswith("+"):
        return _phone(value)
    if not _SIGNAL_USER.fullmatch(value):
        raise ContactError("signal: give +PHONE or a username like name.01")
    return value


ChannelCheck = Callable[[str], str]


def _regex(pattern: re.Pattern[str], message: str) -> ChannelCheck:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ContactError(message)
        return value

    return check


# Channel types and how each value is checked and normalised.
CHANNELS: dict[str, ChannelCheck] = {
    "phone": _phone,
    "sms": _phone,
    "whatsapp": _phone,
    "signal": _signal,
    "telegram": _regex(_TELEGRAM, "telegram: give a username of 5 to 32 letters/digits/_"),
    "email": _regex(_EMAIL, "email: not an e-mail address"),
    "url": _regex(_URL, "url: give an http:// or https:// address"),
    "matrix": _regex(_MATRIX, "matrix: give @user:server"),
}


# -- single-field validation (one clear message each) ---------------------------------------


# The small vocabularies (kinds, regions, languages, specialties) are validated once per
# distinct value: an index build decodes every stored contact, and they repeat.
VOCABULARY_CACHE = 4096


def check_kind(kind: str) -> str:
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ContactError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


@lru_cache(maxsize=VOCABULARY_CACHE)
def _region(code: str) -> str | None:
    import pycountry  # on first use: ~30 ms of import a node start does not need

    if re.fullmatch(r"[A-Z]{2}", code):
        country = pycountry.countries.get(alpha_2=code)
        return code if country is not None else None
    if re.fullmatch(r"[A-Z]{2}-[A-Z0-9]{1,3}", code):
        sub = pycountry.subdivisions.get(code=code)  # type: ignore[no-untyped-call]
        return code if sub is not None else None
    return None


@lru_cache(maxsize=VOCABULARY_CACHE)
def _region_of(region: str) -> str | None:
    return _region(region.strip().upper())


def check_region(region: str) -> str:
    """An ISO 3166-1 alpha-2 country (KE) or ISO 3166-2 subdivision (KE-30), upper case."""
    code = _region_of(region)
    if code is None:
        raise ContactError(f"unknown region {region!r}; use an ISO 3166 code such as KE or KE-30")
    return code


@lru_cache(maxsize=VOCABULARY_CACHE)
def _lang(tag: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9-]{2,35}", tag):
        return None
    import langcodes  # on first use: ~55 ms of import a node start does not need

    if not langcodes.tag_is_valid(tag):
        return None
    return str(langcodes.standardize_tag(tag))


@lru_cache(maxsize=VOCABULARY_CACHE)
def _lang_of(lang: str) -> str | None:
    return _lang(lang.strip())


def check_lang(lang: str) -> str:
    """A valid BCP 47 tag, in its standard form (sw, sw-KE, pt-BR)."""
    tag = _lang_of(lang)
    if tag is None:
        raise ContactError(f"unknown language {lang!r}; use a BCP 47 tag such as sw or fr-CD")
    return tag


def check_channel(text: str) -> tuple[str, str]:
    """TYPE:VALUE, for example phone:+254700000000 or signal:amina.42."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    if not sep or not value:
        raise ContactError(f"--channel must be TYPE:VALUE, got {text!r}")
    if kind not in CHANNELS:
        raise ContactError(f"unknown channel type {kind!r}; choose one of: {', '.join(CHANNELS)}")
    if len(value.encode("utf-8")) > limits.MAX_CONTACT_FIELD_BYTES:
        raise ContactError(f"{kind} value too long")
    try:
        return kind, CHANNELS[kind](value)
    except ContactError as exc:
        raise ContactError(f"--channel {kind}:{value}: {exc}") from None


@lru_cache(maxsize=VOCABULARY_CACHE)
def _specialty(text: str) -> str | None:
    value = text.strip().lower()
    if not _SPECIALTY.fullmatch(value) or len(value) > limits.MAX_CONTACT_FIELD_BYTES:
        return None
    return value


def check_specialty(text: str) -> str:
    value = _specialty(text)
    if value is None:
        raise ContactError(
            f"specialty {text!r}: use lower-case words joined by hyphens (land-rights)"
        )
    return value


def check_name(name: str) -> str:
    value = " ".join(name.split())
    if not value:
        raise ContactError("a contact needs a --name")
    if len(value.encode("utf-8")) > limits.MAX_CONTACT_FIELD_BYTES:
        raise ContactError(f"--name is limited to {limits.MAX_CONTACT_FIELD_BYTES} bytes")
    if _CONTROL.search(value):
        raise ContactError("--name must not contain control characters")
    return value


def check_share(share: str) -> Share:
    try:
        return Share(share.strip().lower())
    except ValueError:
        raise ContactError(
            f"unknown --share {share!r}; choose one of: {', '.join(s.value for s in Share)}"
        ) from None


def check_review_days(days: int) -> int:
    if not 1 <= days <= limits.MAX_REVIEW_DAYS:
        raise ContactError(f"--review-days must be between 1 and {limits.MAX_REVIEW_DAYS}")
    return days


# -- the contact content ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact's plaintext, as sealed in a `contact` record's Body.

    A teaser (on-request) carries only kind, region, languages, specialties and who
    introduces; `name`, `channels` and `notes` are empty in it.
    """

    uid: bytes
    share: Share
    kind: str
    region: str
    langs: tuple[str, ...]
    specialties: tuple[str, ...] = ()
    name: str = ""
    channels: tuple[tuple[str, str], ...] = ()
    notes: str = ""
    review: int = 0  # ms since the epoch: when the author should re-verify it
    teaser: bool = False
    introducer: bytes = b""  # teasers: the node id that brokers introductions

    @classmethod
    def build(
        cls,
        *,
        uid: bytes,
        share: str,
        kind: str,
        name: str,
        region: str,
        langs: Sequence[str] = (),
        channels: Sequence[str] = (),
        specialties: Sequence[str] = (),
        notes: str = "",
        review: int,
    ) -> Contact:
        """Validate what a person typed; ContactError names the first bad field."""
        if len(langs) > limits.MAX_CONTACT_LANGS:
            raise ContactError(f"at most {limits.MAX_CONTACT_LANGS} --lang")
        if len(channels) > limits.MAX_CONTACT_CHANNELS:
            raise ContactError(f"at most {limits.MAX_CONTACT_CHANNELS} --channel")
        if len(specialties) > limits.MAX_CONTACT_SPECIALTIES:
            raise ContactError(f"at most {limits.MAX_CONTACT_SPECIALTIES} --specialty")
        if len(notes.encode("utf-8")) > limits.MAX_CONTACT_NOTES_BYTES:
            raise ContactError(f"--notes is limited to {limits.MAX_CONTACT_NOTES_BYTES} bytes")
        return cls(
            uid=uid,
            share=check_share(share),
            kind=check_kind(kind),
            region=check_region(region),
            langs=tuple(dict.fromkeys(check_lang(x) for x in langs)),
            specialties=tuple(dict.fromkeys(check_specialty(s) for s in specialties)),
            name=check_name(name),
            channels=tuple(dict.fromkeys(check_channel(c) for c in channels)),
            notes=notes.strip(),
            review=review,
        )

    def teaser_of(self, introducer: bytes) -> Contact:
        """What an on-request contact reveals: that it exists, and who can introduce."""
        return Contact(
            uid=self.uid,
            share=Share.ON_REQUEST,
            kind=self.kind,
            region=self.region,
            langs=self.langs,
            specialties=self.specialties,
            review=self.review,
            teaser=True,
            introducer=introducer,
        )

    def to_content(self) -> dict[str, Value]:
        content: dict[str, Value] = {
            "v": CONTACT_VERSION,
            "uid": self.uid,
            "share": self.share.value,
            "kind": self.kind,
            "region": self.region,
            "langs": list(self.langs),
            "specialties": list(self.specialties),
            "review": self.review,
        }
        if self.teaser:
            content["introducer"] = self.introducer
        else:
            content["name"] = self.name
            content["channels"] = [[k, v] for k, v in self.channels]
            content["notes"] = self.notes
        return content

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Contact:
        """Strictly parse a Body's content (DecodeError): an author's bad contact is dropped."""
        teaser = "introducer" in content
        if teaser:
            check_keys(content, _TEASER_KEYS, frozenset(), "contact")
        else:
            check_keys(content, _DETAILS_KEYS, _DETAILS_OPTIONAL, "contact")
        if as_int(content["v"], "version") != CONTACT_VERSION:
            raise DecodeError("unknown contact version")
        try:
            share = _SHARES.get(as_str(content["share"], "share", 16))
            if share is None:
                raise DecodeError("contact has an invalid field")
            kind = _vocabulary(content["kind"], "kind", 32, check_kind)
            region = _vocabulary(content["region"], "region", 8, check_region)
            langs = tuple(_vocabulary(x, "lang", 35, check_lang) for x in _list(content, "langs"))
            specialties = tuple(
                _vocabulary(x, "specialty", 64, check_specialty)
                for x in _list(content, "specialties")
            )
            if teaser:
                if share is not Share.ON_REQUEST:
                    raise DecodeError("only on-request contacts have teasers")
                return cls(
                    uid=as_bytes(content["uid"], UID_BYTES, "uid"),
                    share=share,
                    kind=kind,
                    region=region,
                    langs=langs,
                    specialties=specialties,
                    review=as_int(content["review"], "review", 0, limits.MAX_TIMESTAMP_MS),
                    teaser=True,
                    introducer=as_bytes(content["introducer"], 32, "introducer"),
                )
            channels: list[tuple[str, str]] = []
            for item in _list(content, "channels"):
                pair = as_list(item, 2, "channel")
                channels.append(
                    check_channel(f"{as_str(pair[0], 'channel type', 16)}:{as_str(pair[1])}")
                )
            notes = as_str(content.get("notes", ""), "notes", limits.MAX_CONTACT_NOTES_BYTES)
            return cls(
                uid=as_bytes(content["uid"], UID_BYTES, "uid"),
                share=share,
                kind=kind,
                region=region,
                langs=langs,
                specialties=specialties,
                name=check_name(as_str(content["name"], "name", limits.MAX_CONTACT_FIELD_BYTES)),
                channels=tuple(channels),
                notes=notes,
                review=as_int(content["review"], "review", 0, limits.MAX_TIMESTAMP_MS),
            )
        except (ContactError, ValueError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError("contact has an invalid field") from None

    def words(self) -> str:
        """The searchable text: kind, name, specialties, notes, region and country names."""
        parts = [self.kind, self.name, self.notes, *self.specialties, self.region]
        parts.extend(region_names(self.region))
        return " ".join(parts)

    def search_words(self) -> tuple[str, ...]:
        """`tokens(self.words())` without repeats, in order (what the index keys words by).

        Parts are separated by spaces, so tokenising them one by one gives the same words;
        the kind, specialties and region parts repeat across contacts and are cached."""
        found = [*_vocabulary_tokens(self.kind), *tokens(self.name)]
        if self.notes:
            found += tokens(self.notes)
        for specialty in self.specialties:
            found += _vocabulary_tokens(specialty)
        found += _region_tokens(self.region)
        return tuple(dict.fromkeys(found))


_COMMON = frozenset({"v", "uid", "share", "kind", "region", "langs", "specialties", "review"})
_TEASER_KEYS = _COMMON | {"introducer"}
_DETAILS_KEYS = _COMMON | {"name", "channels"}
_DETAILS_OPTIONAL = frozenset({"notes"})
_SHARES = {s.value: s for s in Share}


def _vocabulary(value: Value, what: str, max_len: int, check: Callable[[str], str]) -> str:
    """as_str(value, what, max_len) then check(value), remembered for the values that pass."""
    if isinstance(value, str):
        checked = _checked_vocabulary(value, max_len, check)
        if checked is not None:
            return checked
    return check(as_str(value, what, max_len))  # raises the precise error


@lru_cache(maxsize=VOCABULARY_CACHE)
def _checked_vocabulary(value: str, max_len: int, check: Callable[[str], str]) -> str | None:
    if len(value.encode("utf-8")) > max_len:
        return None
    try:
        return check(value)
    except ContactError:
        return None


def _list(content: dict[str, Value], key: str) -> list[Value]:
    items = as_list(content[key], what=key)
    if len(items) > limits.MAX_CONTACT_LIST:
        raise DecodeError(f"too many {key}")
    return items


@lru_cache(maxsize=VOCABULARY_CACHE)
def region_names(region: str) -> tuple[str, ...]:
    """Country (and subdivision) names of a region code, for text search."""
    import pycountry

    names: list[str] = []
    country = pycountry.countries.get(alpha_2=region[:2])
    if country is not None:
        names.append(str(country.name))
    if "-" in region:
        sub = pycountry.subdivisions.get(code=region)  # type: ignore[no-untyped-call]
        if sub is not None:
            names.append(str(sub.name))
    return tuple(names)


@lru_cache(maxsize=VOCABULARY_CACHE)
def _vocabulary_tokens(text: str) -> tuple[str, ...]:
    return tuple(tokens(text))


@lru_cache(maxsize=VOCABULARY_CACHE)
def _region_tokens(region: str) -> tuple[str, ...]:
    return tuple(tokens(" ".join((region, *region_names(region)))))


# -- vouches ---------------------------------------------------------------------------------


class VouchAbout(enum.StrEnum):
    PEER = "peer"  # trust in an organisation: an edge of the web of trust
    CONTACT = "contact"  # endorsement of a contact, named by (author, uid)


@dataclass(frozen=True, slots=True)
class Vouch:
    """The content of a `vouch` record."""

    about: VouchAbout
    subject: bytes  # PEER: the node id; CONTACT: the contact's author
    uid: bytes = b""  # CONTACT: the contact's uid

    def to_content(self) -> dict[str, Value]:
        content: dict[str, Value] = {"v": 1, "about": self.about.value, "subject": self.subject}
        if self.about is VouchAbout.CONTACT:
            content["uid"] = self.uid
        return content

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Vouch:
        about_text = as_str(content.get("about"), "about", 16)
        try:
            about = VouchAbout(about_text)
        except ValueError:
            raise DecodeError("unknown vouch subject type") from None
        extra = frozenset({"uid"}) if about is VouchAbout.CONTACT else frozenset()
        check_keys(content, frozenset({"v", "about", "subject"}) | extra, frozenset(), "vouch")
        if as_int(content["v"], "version") != 1:
            raise DecodeError("unknown vouch version")
        subject = as_bytes(content["subject"], 32, "subject")
        uid = as_bytes(content["uid"], UID_BYTES, "uid") if extra else b""
        return cls(about, subject, uid)


# -- query filters ---------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Case- and accent-folded words (what text search compares)."""
    folded = text.casefold()
    if not folded.isascii():
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(folded)


@dataclass(frozen=True, slots=True)
class Filter:
    """A query: every given field must match (SPEC "Matching")."""

    text: str = ""
    kind: str = ""
    region: str = ""
    lang: str = ""

    @classmethod
    def build(cls, text: str = "", kind: str = "", region: str = "", lang: str = "") -> Filter:
        """From what a person typed (ContactError on a bad field)."""
        if len(text.encode("utf-8")) > limits.MAX_QUERY_TEXT_BYTES:
            raise ContactError(f"query text is limited to {limits.MAX_QUERY_TEXT_BYTES} bytes")
        return cls(
            text=" ".join(text.split()),
            kind=check_kind(kind) if kind else "",
            region=check_region(region) if region else "",
            lang=check_lang(lang) if lang else "",
        )

    def to_value(self) -> dict[str, Value]:
        return {
            k: v
            for k, v in (
                ("text", self.text),
                ("kind", self.kind),
                ("region", self.region),
                ("lang", self.lang),
            )
            if v
        }

    @classmethod
    def from_value(cls, value: Value) -> Filter:
        """From a Query message (DecodeError on any bad field)."""
        fields = as_map(value, "filter")
        check_keys(fields, frozenset(), frozenset({"text", "kind", "region", "lang"}), "filter")
        text = as_str(fields.get("text", ""), "text", limits.MAX_QUERY_TEXT_BYTES)
        raw = {k: as_str(fields.get(k, ""), k, 35) for k in ("kind", "region", "lang")}
        try:
            built = cls.build(text, raw["kind"], raw["region"], raw["lang"])
        except ContactError:
            raise DecodeError("query filter has an invalid field") from None
        if built.to_value() != fields:
            raise DecodeError("query filter is not in normal form")
        return built

    def matches(self, contact: Contact, words: Iterable[str] | None = None) -> bool:
        """The reference matcher (the node's index must agree with it)."""
        if self.kind and contact.kind != self.kind:
            return False
        if self.region and not region_matches(self.region, contact.region):
            return False
        if self.lang and not any(lang_matches(self.lang, x) for x in contact.langs):
            return False
        if self.text:
            have = list(words) if words is not None else tokens(contact.words())
            return all(any(w.startswith(t) for w in have) for t in tokens(self.text))
        return True


def region_matches(query: str, region: str) -> bool:
    """KE matches KE and every KE-xx; KE-30 matches KE-30 and country-wide KE contacts."""
    if "-" in query:
        return region == query or region == query[:2]
    return region[:2] == query


@lru_cache(maxsize=VOCABULARY_CACHE)
def primary_lang(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def lang_matches(query: str, lang: str) -> bool:
    """Languages match on their primary subtag: sw matches sw-KE and the reverse."""
    return primary_lang(query) == primary_lang(lang)


# -- ranking ---------------------------------------------------------------------------------

UNKNOWN_DISTANCE = 4  # a voucher outside the known web of trust counts as this far


def trust_distances(
    me: bytes, peers: Iterable[bytes], edges: Iterable[tuple[bytes, bytes]], max_depth: int = 3
) -> dict[bytes, int]:
    """Hops from `me` in the web of trust: my peers are 1, whom they vouch for 2, and so on."""
    out: dict[bytes, int] = {me: 0}
    adj: dict[bytes, set[bytes]] = {}
    for voucher, subject in edges:
        adj.setdefault(voucher, set()).add(subject)
    todo: deque[bytes] = deque()
    for peer in peers:
        if peer not in out:
            out[peer] = 1
            todo.append(peer)
    while todo:
        node = todo.popleft()
        if out[node] >= max_depth:
            continue
        for nxt in adj.get(node, ()):
            if nxt not in out:
                out[nxt] = out[node] + 1
                todo.append(nxt)
    return out


def is_stale(review: int, last_vouch: int, now_ms: int) -> bool:
    """Past its review date, unless a vouch renewed it within the default review interval."""
    renewed = last_vouch + limits.DEFAULT_REVIEW_DAYS * DAY_MS
    return now_ms > max(review, renewed if last_vouch else 0)


def rank_score(distance: int, vouchers: int, freshest_ms: int, now_ms: int, stale: bool) -> float:
    """score = 100/(1+d) + 10*log2(1+v) + 10*f, halved when stale (SPEC "Ranking").

    d: trust distance of the closest voucher (0 = us, UNKNOWN_DISTANCE if unknown);
    v: distinct vouching organisations (the author included); f = max(0, 1 - age/365 days)
    with age measured from the newest of the contact and its vouches."""
    d = min(max(distance, 0), UNKNOWN_DISTANCE)
    age_days = max(0, now_ms - freshest_ms) / DAY_MS
    freshness = max(0.0, 1.0 - age_days / 365.0)
    score = 100.0 / (1 + d) + 10.0 * math.log2(1 + max(vouchers, 0)) + 10.0 * freshness
    return score / 2 if stale else score
