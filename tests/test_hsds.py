"""Open Referral HSDS 3 directories in and out, and one contact as a vCard 4.0, through the
`canopy` command line on real data directories.

The fixtures in tests/data/hsds/ are shaped like the specification's examples
(openreferral/specification examples/: the nested organization list, the compiled service
form with its quoted phone number, and the CSV data package with its column headers), with
rows added for what Canopy maps: taxonomy terms to kinds, service areas and addresses to
regions, languages, phones, and rows that must be skipped or trimmed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import vobject

from node.hsds import _kind_of
from node.vcard import escape, fold
from tests.test_cli import ok, run

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).parent / "data" / "hsds"


@pytest.fixture
def node(tmp_path: Path) -> Path:
    data = tmp_path / "node"
    ok(run(data, "init", "--name", "Importer"))
    return data


def _import(data: Path, *args: str) -> dict[str, Any]:
    return json.loads(ok(run(data, "contact", "import", *args, "--json")))


def _query(data: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(run(data, "query", *args, "--json")))["results"]
    return rows


def _fields(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a contact holds, without its uid, record id and dates."""
    return sorted(
        (
            r["name"],
            r["kind"],
            r["region"],
            tuple(r["langs"]),
            tuple(r["channels"]),
            r.get("notes", ""),
            r["share"],
        )
        for r in rows
    )


def test_nested_json_maps_kind_region_languages_and_channels(node: Path) -> None:
    report = _import(node, "--hsds", str(DATA / "directory.json"))
    assert [i["name"] for i in report["imported"]] == [
        "Legal Aid Clinic (Haki Legal Aid)",
        "Emergency safe house (Nyumba Salama)",
    ]
    reasons = {s["ref"].split()[-1][-2:]: s["reason"] for s in report["skipped"]}
    assert reasons["12"] == "no taxonomy term maps to a Canopy kind and no --kind given"
    assert reasons["22"] == "missing name"
    assert reasons["23"].startswith("name contains a control or bidi character (U+202E)")
    assert reasons["24"] == "phones is not a list of objects"
    assert reasons["03"] == "no taxonomy term maps to a Canopy kind and no --kind given"
    assert report["dropped"] == {
        "fax number (not a Canopy channel)": 1,
        "phone not in international form (+ and 7-15 digits)": 1,
    }
    assert report["defaulted"] == {}
    rows = {r["name"]: r for r in _query(node)}
    clinic = rows["Legal Aid Clinic (Haki Legal Aid)"]
    assert (clinic["kind"], clinic["region"], clinic["langs"]) == ("lawyer", "KE-30", ["en", "sw"])
    assert clinic["channels"] == [
        "phone:+254711000101",
        "email:clinic@haki.example.org",
        "url:https://haki.example.org/clinic",
    ]
    assert clinic["share"] == "peers"
    house = rows["Emergency safe house (Nyumba Salama)"]
    # the quoted number of the specification's example is unquoted; the organization's
    # website stands in for the service's missing url; "Kenya" names the region
    assert (house["kind"], house["region"]) == ("shelter", "KE")
    assert house["channels"] == ["phone:+254722000201", "url:https://nyumba.example.org"]


def test_kind_and_region_defaults_are_used_and_reported(node: Path) -> None:
    report = _import(
        node,
        "--hsds",
        str(DATA / "directory.json"),
        "--kind",
        "digital-security",
        "--share",
        "network",
    )
    assert len(report["imported"]) == 4
    assert report["defaulted"] == {"kind": 2}
    helpdesk = {r["name"]: r for r in _query(node, "--kind", "digital-security")}
    desk = helpdesk["Digital Defenders Helpdesk"]  # an organization without services
    assert (desk["region"], desk["langs"], desk["share"]) == ("UG-102", ["lg"], "network")
    assert desk["channels"][0] == "phone:+256700000301"
    # the address's state_province "Mombasa" names the subdivision KE-28
    assert helpdesk["Food parcels (Haki Legal Aid)"]["region"] == "KE-28"
    out = run(node, "contact", "import", "--hsds", str(DATA / "service_example.json"))
    assert "imported 0 contacts, skipped 1" in ok(out)
    text = ok(
        run(
            node,
            "contact",
            "import",
            "--hsds",
            str(DATA / "service_example.json"),
            "--kind",
            "psychosocial",
            "--region",
            "GB",
        )
    )
    assert "imported 1 contacts, skipped 0" in text
    assert "defaulted kind (from --kind): 1" in text
    counselling = _query(node, "--kind", "psychosocial")[0]
    # the example's address country (US) wins over --region; Urdu comes from its languages
    assert (counselling["region"], counselling["langs"]) == ("US", ["ur"])
    assert counselling["channels"][0] == "phone:+441234234567"


def test_paginated_list_and_service_at_location_forms(node: Path, tmp_path: Path) -> None:
    at_location = {
        "id": "sal-1",
        "service": {
            "id": "svc-1",
            "name": "Evacuation desk",
            "attributes": [{"taxonomy_term": {"name": "Emergency Evacuation"}}],
        },
        "location": {
            "id": "loc-1",
            "phones": [{"number": "+243 810 000 001", "type": "voice"}],
            "languages": [{"code": "fr"}, {"code": "ln"}],
            "addresses": [{"country": "CD", "state_province": "CD-NK"}],
        },
    }
    organization = {
        "id": "org-1",
        "name": "Jurist Collective",
        "website": "https://jc.example",
        "services": [
            {
                "id": "svc-2",
                "name": "Jurist Collective",
                "attributes": [{"taxonomy_term": {"code": "lawyer"}}],
                "service_areas": [{"name": "Congo, The Democratic Republic of the"}],
            }
        ],
    }
    page = tmp_path / "page.json"
    page.write_text(
        json.dumps({"total_items": 2, "page_number": 1, "contents": [at_location, organization]})
    )
    report = _import(node, "--hsds", str(page))
    assert [i["name"] for i in report["imported"]] == ["Evacuation desk", "Jurist Collective"]
    rows = {r["name"]: r for r in _query(node)}
    desk = rows["Evacuation desk"]
    assert (desk["kind"], desk["region"], desk["langs"]) == ("relocation", "CD-NK", ["fr", "ln"])
    assert desk["channels"] == ["phone:+243810000001"]
    jurist = rows["Jurist Collective"]  # the same name as its organization: not repeated
    assert (jurist["kind"], jurist["region"]) == ("lawyer", "CD")
    assert jurist["channels"] == ["url:https://jc.example"]


def test_csv_package_is_read_like_the_json(node: Path, tmp_path: Path) -> None:
    dry = _import(node, "--hsds", str(DATA / "package"), "--dry-run")
    assert dry["dry_run"] and len(dry["imported"]) == 3
    assert _query(node) == []  # a dry run adds nothing
    report = _import(node, "--hsds", str(DATA / "package" / "datapackage.json"))
    assert [i["name"] for i in report["imported"]] == [
        "Community Counselling (Example Organization Inc.)",
        "Legal Aid Clinic (Haki Legal Aid)",
        "24h Defender Hotline (Haki Legal Aid)",
    ]
    assert [s["reason"] for s in report["skipped"]] == [
        "missing name",
        "no taxonomy term maps to a Canopy kind and no --kind given",
    ]
    assert report["dropped"] == {
        "language code not BCP 47": 1,
        "phone not in international form (+ and 7-15 digits)": 1,
    }
    rows = {r["name"]: r for r in _query(node)}
    clinic = rows["Legal Aid Clinic (Haki Legal Aid)"]
    assert (clinic["kind"], clinic["region"], clinic["langs"]) == ("lawyer", "KE-28", ["sw", "en"])
    assert clinic["channels"][:2] == ["phone:+254711000101", "sms:+254711000102"]
    assert rows["24h Defender Hotline (Haki Legal Aid)"]["kind"] == "hotline"
    counselling = rows["Community Counselling (Example Organization Inc.)"]
    assert (counselling["kind"], counselling["region"]) == ("psychosocial", "US")
    # the package without datapackage.json: the conventional file names
    bare = tmp_path / "bare"
    shutil.copytree(DATA / "package", bare)
    (bare / "datapackage.json").unlink()
    again = _import(node, "--hsds", str(bare), "--dry-run")
    assert [i["name"] for i in again["imported"]] == [i["name"] for i in report["imported"]]


def test_import_export_import_round_trip_is_equal(node: Path, tmp_path: Path) -> None:
    _import(node, "--hsds", str(DATA / "package"), "--share", "on-request")  # details exported
    _import(node, "--hsds", str(DATA / "directory.json"), "--kind", "relocation")
    ok(
        run(
            node,
            "contact",
            "add",
            "--kind",
            "interpreter",
            "--name",
            "Amani; Tafsiri, Ltd",
            "--region",
            "TZ",
            "--lang",
            "sw",
            "--channel",
            "sms:+255700000001",
            "--notes",
            "line one\nline two, with \\ and ;",
            "--share",
            "private",
        )
    )
    first = _query(node)
    assert len(first) == 8
    out = tmp_path / "export.json"
    text = ok(run(node, "contact", "export", "--hsds", str(out)))
    assert "wrote 8 contacts as HSDS 3 JSON" in text
    assert "not written" not in text  # every channel of these has an HSDS field
    exported = json.loads(out.read_text())
    assert all(len(org["services"]) == 1 for org in exported)
    other = tmp_path / "other"
    ok(run(other, "init", "--name", "Reader"))
    report = _import(other, "--hsds", str(out), "--share", "private")
    assert report["skipped"] == [] and report["defaulted"] == {}
    second = _query(other)
    strip = [f[:-1] for f in _fields(first)]  # the share is the importer's choice
    assert [f[:-1] for f in _fields(second)] == strip


def test_vcard_export_field_by_field_and_parsed_back(node: Path, tmp_path: Path) -> None:
    long_notes = "Kisima cha maji — " + "ñ" * 60 + "\nSecond line; a, b \\ c"
    ok(
        run(
            node,
            "contact",
            "add",
            "--kind",
            "lawyer",
            "--name",
            "Wakili, Haki; & Co",
            "--region",
            "KE-30",
            "--lang",
            "sw",
            "--lang",
            "en",
            "--channel",
            "phone:+254711000101",
            "--channel",
            "sms:+254711000102",
            "--channel",
            "email:desk@haki.example.org",
            "--channel",
            "url:https://haki.example.org",
            "--channel",
            "signal:wakili.42",
            "--specialty",
            "land-rights",
            "--notes",
            long_notes,
        )
    )
    rid = _query(node)[0]["id"]
    out = tmp_path / "card.vcf"
    ok(run(node, "contact", "export", rid, "--vcard", "--out", str(out)))
    raw = out.read_bytes()
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    raw.decode("utf-8")  # folding never split a UTF-8 sequence
    unfolded = raw.decode().replace("\r\n ", "").split("\r\n")[:-1]
    assert unfolded[:3] == ["BEGIN:VCARD", "VERSION:4.0", "KIND:org"]
    assert unfolded[-1] == "END:VCARD"
    assert "FN:Wakili\\, Haki\\; & Co" in unfolded
    assert "ORG:Wakili\\, Haki\\; & Co" in unfolded
    assert "TEL;VALUE=uri;TYPE=voice:tel:+254711000101" in unfolded
    assert "TEL;VALUE=uri;TYPE=text:tel:+254711000102" in unfolded
    assert "EMAIL:desk@haki.example.org" in unfolded
    assert "URL:https://haki.example.org" in unfolded
    assert "IMPP:signal:wakili.42" in unfolded
    assert [x for x in unfolded if x.startswith("LANG")] == ["LANG;PREF=1:sw", "LANG;PREF=2:en"]
    assert "ADR;TYPE=work:;;;;Nairobi City;;Kenya" in unfolded
    assert "CATEGORIES:lawyer,land-rights" in unfolded
    assert f"NOTE:{escape(long_notes)}" in unfolded
    card = vobject.readOne(raw.decode())
    assert card.version.value == "4.0"
    assert card.fn.value == "Wakili, Haki; & Co"
    assert card.note.value == long_notes
    assert sorted(t.value for t in card.contents["tel"]) == [
        "tel:+254711000101",
        "tel:+254711000102",
    ]
    assert card.email.value == "desk@haki.example.org"
    assert card.adr.value.country == "Kenya"
    printed = ok(run(node, "contact", "export", rid[:12], "--vcard"))
    assert printed.replace("\r\n", "\n") == raw.decode().replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("term", "kind"),
    [
        ("Legal Aid Clinic", "lawyer"),  # "legal" comes before "clinic" in the table
        ("Paralegal support", "lawyer"),
        ("BH-1800 Emergency Shelter", "shelter"),
        ("Mental Health Counseling", "psychosocial"),
        ("Crisis Intervention Hotlines", "hotline"),
        ("Interpretation Services", "interpreter"),
        ("Emergency Grants", "emergency-funds"),
        ("Immigrant Services", ""),  # "grant" only at the start of a word
        ("digital-security", "digital-security"),
        ("Food Pantry", ""),
    ],
)
def test_taxonomy_terms_map_to_kinds_on_word_starts(term: str, kind: str) -> None:
    assert _kind_of({"attributes": [{"taxonomy_term": {"name": term}}]}) == kind


def test_vcard_folding_and_escaping() -> None:
    assert escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    line = "NOTE:" + "é" * 100
    folded = fold(line).encode()
    parts = folded.split(b"\r\n")[:-1]
    assert all(len(p) <= 75 for p in parts) and all(p.startswith(b" ") for p in parts[1:])
    assert b"".join(p[1:] if i else p for i, p in enumerate(parts)).decode() == line


HOSTILE: list[tuple[str, str | bytes, str]] = [
    ("broken.json", '[{"name": "x",', "not valid JSON (line 1"),
    ("scalar.json", "42", "expected HSDS objects, found a number"),
    ("items.json", '["a", "b"]', "expected HSDS objects, found a text"),
    ("latin1.json", b'[{"name": "caf\xe9"}]', "not UTF-8 text"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
]


@pytest.mark.parametrize(("name", "content", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_malformed_files_give_one_clear_line(
    node: Path, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = run(node, "contact", "import", "--hsds", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_hostile_packages_and_fields(node: Path, tmp_path: Path) -> None:
    escape_pkg = tmp_path / "escape"
    escape_pkg.mkdir()
    (escape_pkg / "services.csv").write_text("id,name\n1,Ok\n")
    (escape_pkg / "datapackage.json").write_text(
        json.dumps({"resources": [{"name": "services", "path": "../../etc/passwd"}]})
    )
    result = run(node, "contact", "import", "--hsds", str(escape_pkg))
    assert result.returncode == 1 and "leaves the package" in result.stderr
    ragged = tmp_path / "ragged"
    ragged.mkdir()
    (ragged / "services.csv").write_text("id,name\n1,Ok,extra\n")
    result = run(node, "contact", "import", "--hsds", str(ragged))
    assert result.returncode == 1 and "more fields than the header" in result.stderr
    missing = run(node, "contact", "import", "--hsds", str(tmp_path / "nothing.json"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    huge_note = "x" * 100_000
    services = [
        {
            "id": "big",
            "name": "Big notes",
            "description": huge_note,
            "service_areas": [{"name": "KE"}],
        },
        {"id": "long", "name": "n" * 300, "service_areas": [{"name": "KE"}]},
        {"id": "typed", "name": ["not", "text"], "service_areas": [{"name": "KE"}]},
        {"id": "bidi", "name": "Safe\u2066house", "service_areas": [{"name": "KE"}]},
        {"id": "ctl", "name": "Line\x1b[2Jclear", "service_areas": [{"name": "KE"}]},
        {
            "id": "mail",
            "name": "Bad mail",
            "email": "not an email",
            "service_areas": [{"name": "KE"}],
        },
        {
            "id": "noted",
            "name": "Quiet",
            "description": "calm\u202etext",
            "service_areas": [{"name": "KE"}],
        },
    ]
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps([{"name": "Org", "services": services}]))
    report = _import(node, "--hsds", str(path), "--kind", "shelter")
    assert [i["ref"] for i in report["imported"]] == [
        "service big",
        "service mail",
        "service noted",
    ]
    reasons = {s["ref"]: s["reason"] for s in report["skipped"]}
    assert reasons["service long"].startswith("name longer than 256 bytes")
    assert reasons["service typed"] == "name is a list, not text"
    assert reasons["service bidi"].startswith("name contains a control or bidi character")
    assert reasons["service ctl"].startswith("name contains a control or bidi character")
    assert report["dropped"] == {
        "description cut to 2048 bytes": 1,
        "control or bidi characters removed from the description": 1,
        "email not an e-mail address": 1,
    }
    rows = {r["name"]: r for r in _query(node)}
    assert len(rows["Big notes (Org)"]["notes"]) == 2048
    assert rows["Quiet (Org)"]["notes"] == "calmtext"
    bad = run(node, "contact", "import", "--hsds", str(path), "--kind", "plumber")
    assert bad.returncode == 1 and "unknown kind 'plumber'" in bad.stderr
    text = ok(run(node, "contact", "import", "--hsds", str(path), "--dry-run"))
    assert "\x1b" not in text  # a hostile id or reason reaches the terminal escaped


def test_oversized_files_and_fields_are_refused_whole(node: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: the size is refused before anything is read
        f.truncate(64 * 1024 * 1024 + 1)
    result = run(node, "contact", "import", "--hsds", str(big))
    assert result.returncode == 1 and "an import file is limited to 67108864" in result.stderr
    package = tmp_path / "wide"
    package.mkdir()
    (package / "services.csv").write_text("id,name,description\n1,Ok," + "x" * 200_000 + "\n")
    result = run(node, "contact", "import", "--hsds", str(package))
    assert result.returncode == 1 and "not valid CSV (field larger than" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_says_what_has_no_hsds_field(node: Path, tmp_path: Path) -> None:
    ok(
        run(
            node,
            "contact",
            "add",
            "--kind",
            "hotline",
            "--name",
            "Signal line",
            "--region",
            "KE",
            "--channel",
            "signal:line.24",
            "--channel",
            "phone:+254700000024",
        )
    )
    out = tmp_path / "out.json"
    text = ok(run(node, "contact", "export", "--hsds", str(out)))
    assert "not written: signal channel (no HSDS field): 1" in text
    service = json.loads(out.read_text())[0]["services"][0]
    assert [p["number"] for p in service["phones"]] == ["+254700000024"]
    assert service["attributes"][0]["taxonomy_term"]["code"] == "hotline"
    assert service["service_areas"][0]["name"] == "KE"


def test_export_needs_one_form(node: Path) -> None:
    both = run(node, "contact", "export")
    assert both.returncode == 2 and "--hsds OUT" in both.stderr
    no_id = run(node, "contact", "export", "--vcard")
    assert no_id.returncode == 2 and "needs the contact's ID" in no_id.stderr
