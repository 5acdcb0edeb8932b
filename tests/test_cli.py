"""The `canopy` command line as a user runs it: real subprocesses, real data directories.

The bad-input walk checks the contract of DESIGN.md ("a clear one-line message on stderr, a
non-zero exit code, never a traceback for bad input") for every input in WALK; `pytest -s`
prints the walk as a table. The happy path covers init, id, invite/accept, peers, publish,
guides, show and status between two data directories, offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse"

# The walk's module fixture runs every case (100+ processes, some deriving a passphrase key)
# before the first test: on a loaded machine that takes minutes, not the default 120 s.
pytestmark = pytest.mark.timeout(600)


def run(
    data: Path | None,
    *args: str,
    passphrase: str | None = PASSPHRASE,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env["PYTHONPATH"] = str(ROOT)
    if passphrase is not None:
        env["CANOPY_PASSPHRASE"] = passphrase
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "cli"]
    if data is not None:
        argv += ["--data", str(data)]
    return subprocess.run(
        [*argv, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,  # never a terminal: no prompt can hang a test
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


# -- the bad-input walk ---------------------------------------------------------------------------


@dataclass
class World:
    """Data directories and files the walk's inputs refer to (built once, with the CLI)."""

    base: Path
    node: Path  # initialised, passphrase PASSPHRASE
    other_code: str = ""  # a valid invite code from another node
    own_code: str = ""  # a valid invite code from `node` itself
    guide: Path = field(init=False)
    bundle: Path = field(init=False)  # from `other` (trusted by `node`) for `node`
    backup: Path = field(init=False)  # of `node`, under PASSPHRASE

    def __post_init__(self) -> None:
        self.guide = self.base / "guide.md"
        self.bundle = self.base / "for-node.bundle"
        self.backup = self.base / "node.backup"


@dataclass
class Case:
    name: str
    args: Callable[[World], list[str]]  # the whole argv after `canopy`, --data included
    passphrase: str | None = PASSPHRASE
    env: dict[str, str] = field(default_factory=dict)
    bug: str = ""  # non-empty: a known bug, the case is expected to break the contract


def _with_node(*args: str) -> Callable[[World], list[str]]:
    return lambda w: ["--data", str(w.node), *args]


_HELP = ("help", "request", "--need", "legal", "--region", "KE", "--to")
_CONTACT_OK = ("--kind", "lawyer", "--name", "Walk Test", "--region", "KE-28")

WALK: list[Case] = [
    Case("unknown command", _with_node("frobnicate")),
    Case("missing argument", _with_node("accept")),
    Case("missing sub-command", _with_node("publish")),
    Case("unknown option", _with_node("guides", "--colour")),
    Case("show unknown id", _with_node("show", "deadbeef00")),
    Case("show not hex", _with_node("show", "zz")),
    Case("help without action", _with_node("help")),
    Case("help request unknown circle", _with_node(*_HELP, "circle:Nobody", "Need a lawyer")),
    Case("help request to peers", _with_node(*_HELP, "peers", "Need a lawyer")),
    Case("help request bad need", _with_node("help", "request", "--need", "cash", "x")),
    Case("help claim unknown id", _with_node("help", "claim", "deadbeef00")),
    Case("help resolve without outcome", _with_node("help", "resolve", "deadbeef00")),
    Case("ack unknown alert", _with_node("ack", "deadbeef00")),
    Case("circle oncall unknown circle", _with_node("circle", "oncall", "Nobody")),
    Case(
        "circle oncall bad moment",
        _with_node("circle", "oncall", "Nobody", "me", "--from", "soonish", "--to", "2h"),
    ),
    Case("circle set bad target", _with_node("circle", "set", "Nobody", "--response-target", "x")),
    Case("away in no circle", _with_node("away", "--until", "2d")),
    Case("away bad date", _with_node("away", "--until", "2026-13-45")),
    Case("show id too short", _with_node("show", "abc")),
    Case("accept garbage", _with_node("accept", "garbage")),
    Case("accept truncated code", lambda w: ["--data", str(w.node), "accept", w.other_code[:60]]),
    Case(
        "accept code, one char changed",
        lambda w: [
            "--data",
            str(w.node),
            "accept",
            w.other_code[:-10] + ("a" if w.other_code[-10] != "a" else "b") + w.other_code[-9:],
        ],
    ),
    Case("accept own invite", lambda w: ["--data", str(w.node), "accept", w.own_code]),
    Case("trust notanid", _with_node("trust", "notanid")),
    Case(
        "trust with http address",
        _with_node("trust", "a" * 52, "--address", "http://x.example/canopy"),
    ),
    Case("distrust nobody", _with_node("distrust", "nobody")),
    Case("publish missing file", _with_node("publish", "guide", "/no/such/file")),
    Case(
        "publish --to nosuchpeer",
        lambda w: ["--data", str(w.node), "publish", "guide", "--to", "nosuchpeer", str(w.guide)],
    ),
    Case(
        "publish non-UTF-8 file",
        lambda w: ["--data", str(w.node), "publish", "guide", str(w.base / "latin1.md")],
    ),
    Case("publish a directory", lambda w: ["--data", str(w.node), "publish", "guide", str(w.base)]),
    Case("--data uninitialised", lambda w: ["--data", str(w.base / "empty"), "status"]),
    Case("init twice", _with_node("init")),
    Case("wrong passphrase", _with_node("status"), passphrase="wrong horse"),
    Case("no passphrase, no tty", _with_node("status"), passphrase=None),
    Case(
        "--passphrase-file missing",
        lambda w: ["--data", str(w.node), "--passphrase-file", "/no/such/pass", "status"],
        passphrase=None,
    ),
    Case("world-readable data dir", lambda w: ["--data", str(w.base / "open"), "status"]),
    Case("config check missing", lambda w: ["config", "check", str(w.base / "missing.toml")]),
    Case("config check bad TOML", lambda w: ["config", "check", str(w.base / "bad.toml")]),
    Case("config check unknown key", lambda w: ["config", "check", str(w.base / "unknown.toml")]),
    Case("run --listen bad", _with_node("run", "--listen", "bad")),
    Case(
        "run, bad CANOPY_NODE_LISTEN",
        _with_node("run"),
        env={"CANOPY_NODE_LISTEN": "nohost"},
    ),
    Case("invite --address http", _with_node("invite", "--address", "http://x.example")),
    Case(
        "invite --hours nan",
        _with_node("invite", "--hours", "nan", "--address", "ws://a.example/canopy"),
    ),
    Case(
        "invite --hours inf",
        _with_node("invite", "--hours", "inf", "--address", "ws://a.example/canopy"),
    ),
    Case(
        "invite --hours -1",
        _with_node("invite", "--hours", "-1", "--address", "ws://a.example/canopy"),
    ),
    Case(
        "--data is a file, init",
        lambda w: ["--data", str(w.guide), "init"],
    ),
    # operations (issue 6): export/import, backup/restore, logs, proxy
    Case("export without --for", lambda w: ["--data", str(w.node), "export", "--out", "x"]),
    Case(
        "export --for nobody",
        lambda w: ["--data", str(w.node), "export", "--for", "nobody", "--out", str(w.base / "n")],
    ),
    Case(
        "export --out existing file",
        lambda w: ["--data", str(w.node), "export", "--for", "Other", "--out", str(w.guide)],
    ),
    Case(
        "export --out in missing dir",
        lambda w: ["--data", str(w.node), "export", "--for", "Other", "--out", "/no/such/dir/b"],
    ),
    Case("import missing file", _with_node("import", "/no/such/bundle")),
    Case("import a directory", lambda w: ["--data", str(w.node), "import", str(w.base)]),
    Case("import not a bundle", lambda w: ["--data", str(w.node), "import", str(w.guide)]),
    Case(
        "import truncated bundle",
        lambda w: ["--data", str(w.node), "import", str(w.base / "truncated.bundle")],
    ),
    Case(
        "import tampered bundle",
        lambda w: ["--data", str(w.node), "import", str(w.base / "tampered.bundle")],
    ),
    Case(
        "import bundle for another node",
        lambda w: ["--data", str(w.base / "other"), "import", str(w.bundle)],
        passphrase=None,
    ),
    Case(
        "import bundle from untrusted node",
        lambda w: ["--data", str(w.node), "import", str(w.base / "stranger.bundle")],
    ),
    Case(
        "backup --out existing file",
        lambda w: ["--data", str(w.node), "backup", "--out", str(w.guide)],
    ),
    Case(
        "backup, no-passphrase node, no passphrase",
        lambda w: ["--data", str(w.base / "other"), "backup", "--out", str(w.base / "o.bak")],
        passphrase=None,
    ),
    Case("restore missing file", lambda w: ["restore", "/no/such/backup", "--data", "/tmp/x"]),
    Case(
        "restore not a backup",
        lambda w: ["restore", str(w.guide), "--data", str(w.base / "r1")],
    ),
    Case(
        "restore wrong passphrase",
        lambda w: ["restore", str(w.backup), "--data", str(w.base / "r2")],
        passphrase="wrong horse",
    ),
    Case(
        "restore truncated backup",
        lambda w: ["restore", str(w.base / "truncated.backup"), "--data", str(w.base / "r3")],
    ),
    Case(
        "restore over an identity",
        lambda w: ["restore", str(w.backup), "--data", str(w.node)],
    ),
    Case("run --log-format xml", _with_node("run", "--log-format", "xml")),
    Case(
        "run, bad CANOPY_NETWORK_SOCKS5",
        _with_node("run"),
        env={"CANOPY_NETWORK_SOCKS5": "http://127.0.0.1:9050"},
    ),
    Case("config check bad log.format", lambda w: ["config", "check", str(w.base / "log.toml")]),
    Case("config check wrong type", lambda w: ["config", "check", str(w.base / "type.toml")]),
    Case(
        "trust .onion with http",
        _with_node("trust", "a" * 52, "--address", "http://abcdefghijklmnop.onion/canopy"),
    ),
    *[
        Case(f"contact add {name}", _with_node("contact", "add", *_CONTACT_OK, *extra))
        for name, extra in (
            ("bad kind", ("--kind", "lawyr")),
            ("bad region", ("--region", "KE-999")),
            ("region not a code", ("--region", "Kenya")),
            ("bad lang", ("--lang", "zz")),
            ("bad channel type", ("--channel", "fax:+254700000000")),
            ("channel without value", ("--channel", "phone")),
            ("bad phone", ("--channel", "phone:0700")),
            ("bad email", ("--channel", "email:nobody")),
            ("bad specialty", ("--specialty", "Land Rights!")),
            ("bad share", ("--share", "public")),
            ("--to with network", ("--share", "network", "--to", "peers")),
            ("--review-days 0", ("--review-days", "0")),
            ("--review-days not a number", ("--review-days", "soon")),
            ("empty name", ("--name", " ")),
        )
    ],
    Case("contact add without --name", _with_node("contact", "add", "--kind", "lawyer")),
    Case("query bad region", _with_node("query", "--region", "XX")),
    Case("query bad lang", _with_node("query", "--lang", "english")),
    Case("query bad kind", _with_node("query", "--kind", "spy")),
    Case("query --limit 0", _with_node("query", "--limit", "0")),
    Case("query --network, node stopped", _with_node("query", "--network", "--kind", "lawyer")),
    Case("vouch unknown contact", _with_node("vouch", "deadbeef00")),
    Case("vouch not a peer", _with_node("vouch", "nobody")),
    Case("introduce unknown", _with_node("introduce", "deadbeef00")),
    Case("introductions approve unknown", _with_node("introductions", "--approve", "abcdef12")),
    Case("withdraw unknown", _with_node("withdraw", "deadbeef00")),
]


@dataclass
class Outcome:
    case: Case
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("cli-walk")
    w = World(base=base, node=base / "node")
    ok(run(w.node, "init", "--name", "Walker"))
    other = base / "other"
    ok(run(other, "init", "--no-passphrase", "--name", "Other"))
    w.other_code = ok(run(other, "invite", "--address", "ws://other.example/canopy")).strip()
    w.own_code = ok(run(w.node, "invite", "--address", "ws://node.example/canopy")).strip()
    (base / "empty").mkdir()
    ok(run(base / "open", "init", "--no-passphrase"))
    os.chmod(base / "open", 0o755)
    w.guide.write_text("# Walk\n\ntext\n")
    # A bundle for `node` from `other`, which `node` trusts; one from a stranger it does not.
    node_id = json.loads(ok(run(w.node, "id", "--json")))["id"]
    other_id = json.loads(ok(run(other, "id", "--json", passphrase=None)))["id"]
    ok(run(w.node, "trust", other_id, "--name", "Other"))
    ok(run(other, "trust", node_id, "--name", "Walker", passphrase=None))
    (base / "o.md").write_text("# For walker\n\nnetwork text\n")
    ok(run(other, "publish", "guide", str(base / "o.md"), "--to", "network", passphrase=None))
    ok(run(other, "export", "--for", "Walker", "--out", str(w.bundle), passphrase=None))
    data = w.bundle.read_bytes()
    (base / "truncated.bundle").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) - 40] ^= 0x01
    (base / "tampered.bundle").write_bytes(bytes(flipped))
    stranger = base / "stranger"
    ok(run(stranger, "init", "--no-passphrase"))
    ok(run(stranger, "trust", node_id, passphrase=None))
    ok(run(stranger, "export", "--for", node_id, "--out", str(base / "stranger.bundle")))
    ok(run(w.node, "backup", "--out", str(w.backup)))
    (base / "truncated.backup").write_bytes(w.backup.read_bytes()[:-100])
    (base / "log.toml").write_text('[log]\nformat = "xml"\n')
    (base / "type.toml").write_text('[network]\nheartbeat = "often"\n')
    (base / "latin1.md").write_bytes("Caf\xe9 des droits".encode("latin-1"))
    (base / "bad.toml").write_text("[node\nlisten = 1\n")
    (base / "unknown.toml").write_text('[node]\nlisten = "127.0.0.1:7420"\nfoo = 1\n')
    return w


@pytest.fixture(scope="module")
def walk(world: World) -> dict[str, Outcome]:
    """Run every case once (two at a time), before and independent of the assertions."""

    def one(case: Case) -> Outcome:
        argv = case.args(world)
        result = run(None, *argv, passphrase=case.passphrase, extra_env=case.env)
        return Outcome(case, argv, result.returncode, result.stdout, result.stderr)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {o.case.name: o for o in pool.map(one, WALK)}


def _contract_problems(o: Outcome) -> list[str]:
    problems = []
    if o.returncode == 0:
        problems.append("exit code 0")
    if "Traceback" in o.stdout + o.stderr:
        problems.append("traceback")
    lines = o.stderr.splitlines()
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    elif not lines[0].startswith("canopy: ") or len(lines[0]) <= len("canopy: "):
        problems.append("stderr line does not start with 'canopy: '")
    return problems


def _params() -> Iterator[object]:
    for case in WALK:
        marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {case.bug}")] if case.bug else []
        yield pytest.param(case.name, id=case.name, marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_bad_input_gives_one_line_and_nonzero_exit(walk: dict[str, Outcome], name: str) -> None:
    outcome = walk[name]
    assert _contract_problems(outcome) == [], (outcome.argv, outcome.stdout, outcome.stderr)


def test_bad_input_messages_say_what_is_wrong(walk: dict[str, Outcome], world: World) -> None:
    """Each message names the problem (a generic 'error' would pass the contract test)."""
    expected = {
        "unknown command": "invalid choice: 'frobnicate'",
        "missing argument": "required: code",
        "show unknown id": "no record deadbeef00",
        "show not hex": "not a record id",
        "show id too short": "not a record id",
        "accept garbage": "not a Canopy invite code",
        "accept truncated code": "invite",
        "accept own invite": "your own invite",
        "trust notanid": "not a node id: 'notanid'",
        "trust with http address": "ws://",
        "distrust nobody": "no trusted peer matches 'nobody'",
        "publish missing file": "cannot read /no/such/file",
        "publish --to nosuchpeer": "not a node id: 'nosuchpeer'",
        "publish non-UTF-8 file": "not UTF-8",
        "--data uninitialised": "no Canopy identity",
        "init twice": "already holds a Canopy identity",
        "wrong passphrase": "wrong passphrase",
        "no passphrase, no tty": "CANOPY_PASSPHRASE",
        "--passphrase-file missing": "cannot read passphrase file",
        "world-readable data dir": "accessible to other users",
        "config check missing": "cannot read",
        "config check bad TOML": "bad.toml",
        "config check unknown key": "unknown.toml:3: unknown key node.foo",
        "run --listen bad": "--listen must be HOST:PORT",
        "run, bad CANOPY_NODE_LISTEN": "node.listen must be HOST:PORT",
        "export without --for": "required: --for",
        "export --for nobody": "no trusted peer matches 'nobody'",
        "export --out existing file": "already exists",
        "export --out in missing dir": "is not a directory",
        "import missing file": "cannot read /no/such/bundle",
        "import a directory": "is a directory",
        "import not a bundle": "not a Canopy bundle",
        "import truncated bundle": "bundle refused, nothing imported",
        "import tampered bundle": "bundle refused, nothing imported",
        "import bundle for another node": "addressed to another node",
        "import bundle from untrusted node": "a node you do not trust",
        "backup --out existing file": "already exists",
        "backup, no-passphrase node, no passphrase": "CANOPY_PASSPHRASE",
        "restore missing file": "cannot read /no/such/backup",
        "restore not a backup": "not a Canopy backup",
        "restore wrong passphrase": "wrong passphrase",
        "restore truncated backup": "wrong passphrase, or the backup is damaged or truncated",
        "restore over an identity": "--force",
        "run --log-format xml": "invalid choice: 'xml'",
        "run, bad CANOPY_NETWORK_SOCKS5": "network.socks5 must be socks5://HOST:PORT",
        "config check bad log.format": "log.toml:2: log.format must be",
        "config check wrong type": "type.toml:2: network.heartbeat must be a number",
        "trust .onion with http": "ws://",
    }
    wrong = {
        name: walk[name].stderr.strip()
        for name, text in expected.items()
        if text not in walk[name].stderr
    }
    assert wrong == {}
    # Usage errors exit 2, everything else 1.
    assert walk["unknown command"].returncode == 2
    assert walk["missing argument"].returncode == 2
    assert walk["run --listen bad"].returncode == 2
    assert walk["trust notanid"].returncode == 1
    # Nothing secret or typed-in leaks into messages.
    for o in walk.values():
        assert PASSPHRASE not in o.stderr
        assert "wrong horse" not in o.stderr
    # The refused commands changed nothing on the node (it trusts `other`, from the fixture).
    status = json.loads(ok(run(world.node, "status", "--json")))
    assert status["records"] == {} and status["peers"] == 1
    assert not (world.base / "r1").exists() or not any((world.base / "r1").iterdir())
    assert not (world.base / "r2" / "identity.key").exists()


def test_print_bad_input_walk(walk: dict[str, Outcome]) -> None:
    """`pytest -s tests/test_cli.py -k walk` shows what a user sees for each bad input."""
    width = max(len(name) for name in walk)
    print()
    print(f"{'INPUT'.ljust(width)}  EXIT  STDERR")
    for case in WALK:
        o = walk[case.name]
        first = (o.stderr.splitlines() or [""])[0]
        if "Traceback" in o.stderr:
            first = "TRACEBACK ... " + o.stderr.strip().splitlines()[-1]
        flag = "  [known bug]" if case.bug else ""
        print(f"{case.name.ljust(width)}  {o.returncode:>4}  {first[:110]}{flag}")
    assert set(walk) == {c.name for c in WALK}
    good = [c.name for c in WALK if not c.bug]
    assert all(not _contract_problems(walk[name]) for name in good)


# -- the happy path -------------------------------------------------------------------------------

NODE_ID = re.compile(r"^[a-z2-7]{52}$")
SAFETY_CODE = re.compile(r"^\d{5}( \d{5}){5}$")


def test_init_with_and_without_passphrase(tmp_path: Path) -> None:
    out = ok(run(tmp_path / "a", "init", "--name", "Alpha"))
    assert "node id:" in out and "safety code:" in out
    assert "WITHOUT a passphrase" not in out
    key = (tmp_path / "a" / "identity.key").read_bytes()
    # The passphrase protects the key: another one does not open it.
    assert run(tmp_path / "a", "id", passphrase="other").returncode != 0

    out = ok(run(tmp_path / "b", "init", "--no-passphrase", passphrase=None))
    assert "WITHOUT a passphrase" in out
    # No passphrase needed afterwards, and none is asked for.
    info = json.loads(ok(run(tmp_path / "b", "id", "--json", passphrase=None)))
    assert NODE_ID.match(info["id"])
    assert info["id"] in out
    assert len((tmp_path / "b" / "identity.key").read_bytes()) < len(key)


def test_happy_path_two_nodes_offline(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    init_out = ok(run(a, "init", "--name", "Alpha Legal Aid"))
    ok(run(b, "init", "--name", "Beta Shelter", passphrase="beta pass"))

    # id --json
    info = json.loads(ok(run(a, "id", "--json")))
    assert NODE_ID.match(info["id"]) and len(info["id"]) == 52
    assert SAFETY_CODE.match(info["safety_code"])
    assert info["id"] in init_out and info["safety_code"] in init_out
    assert info["name"] == "Alpha Legal Aid"
    assert info["running"] is False
    assert info["addresses"] == ["ws://127.0.0.1:7420/canopy"]  # derived from the default listen
    plain = ok(run(a, "id"))
    assert info["id"] in plain and info["safety_code"] in plain

    # invite / accept, offline
    result = run(a, "invite", "--address", "wss://alpha.example.org/canopy", "--hours", "2")
    code = ok(result).strip()
    assert code.startswith("canopy-invite:") and "\n" not in code
    assert "valid until" in result.stderr
    accepted = ok(run(b, "accept", code, passphrase="beta pass"))
    assert "trusted Alpha Legal Aid" in accepted
    assert info["safety_code"] in accepted  # shown for comparing out of band

    peers = json.loads(ok(run(b, "peers", "--json", passphrase="beta pass")))["peers"]
    assert len(peers) == 1
    (peer,) = peers
    assert peer["id"] == info["id"]
    assert peer["name"] == "Alpha Legal Aid"
    assert peer["safety_code"] == info["safety_code"]
    assert peer["addresses"] == ["wss://alpha.example.org/canopy"]
    assert peer["invite_pending"] is True
    assert peer["state"] == "node not running"
    assert json.loads(ok(run(a, "peers", "--json")))["peers"] == []  # A learns of B on redeem

    # publish two guides at once, to peers
    g1 = tmp_path / "phones.md"
    g1.write_text("# Phone safety\n\nUse a separate SIM. Marker-Q7.\n")
    g2 = tmp_path / "lawyers.md"
    g2.write_text("Lawyers who take land-rights cases in Mombasa.\n")
    out = ok(
        run(
            b,
            "publish",
            "guide",
            str(g1),
            str(g2),
            "--lang",
            "sw",
            "--topic",
            "safety",
            "--region",
            "KE",
            passphrase="beta pass",
        )
    )
    lines = out.strip().splitlines()
    assert len(lines) == 2
    ids = [line.split()[0] for line in lines]
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
    assert "Phone safety" in lines[0] and "lawyers" in lines[1]

    listing = json.loads(ok(run(b, "guides", "--json", passphrase="beta pass")))
    assert listing["held_unreadable"] == 0
    by_id = {g["id"]: g for g in listing["guides"]}
    assert set(by_id) == set(ids)
    assert by_id[ids[0]]["title"] == "Phone safety"
    assert by_id[ids[1]]["title"] == "lawyers"
    for g in by_id.values():
        assert g["author_label"] == "you" and g["lang"] == "sw" and g["region"] == "KE"
        assert g["topics"] == ["safety"] and g["scope"] == "peers"
    table = ok(run(b, "guides", passphrase="beta pass"))
    assert "Phone safety" in table and ids[0][:12] in table

    shown = ok(run(b, "show", ids[0][:10], passphrase="beta pass"))
    assert shown.startswith("# Phone safety\n")
    assert "Use a separate SIM. Marker-Q7." in shown
    shown_json = json.loads(ok(run(b, "show", ids[1], "--json", passphrase="beta pass")))
    assert shown_json["content"]["text"] == g2.read_text()
    assert shown_json["kind"] == "guide"

    status = json.loads(ok(run(b, "status", "--json", passphrase="beta pass")))
    # --to peers: the guides, and A's peers circle they are sealed to (made, B added)
    assert status["records"] == {"guide": 2, "circle": 2}
    assert status["peers"] == 1
    assert status["running"] is False
    assert status["name"] == "Beta Shelter"
    # A holds none of it: nothing travels without a running node.
    assert json.loads(ok(run(a, "status", "--json")))["records"] == {}

    # trust by id, then distrust by name, at once
    b_id = json.loads(ok(run(b, "id", "--json", passphrase="beta pass")))["id"]
    ok(run(a, "trust", b_id, "--address", "ws://beta.example:7420/canopy", "--name", "Beta"))
    assert [p["id"] for p in json.loads(ok(run(a, "peers", "--json")))["peers"]] == [b_id]
    assert "trust withdrawn" in ok(run(a, "distrust", "Beta"))
    assert json.loads(ok(run(a, "peers", "--json")))["peers"] == []


def test_config_check_accepts_the_example() -> None:
    out = ok(run(None, "config", "check", str(ROOT / "config.example.toml")))
    assert "ok" in out and "127.0.0.1:7420" in out
