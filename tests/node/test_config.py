"""load_config: defaults, the shipped example, environment overrides, and errors that name
the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import Config, load_config, split_host_port
from protocol.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "canopy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config(None, NO_ENV)
    assert config == Config()
    assert config.listen == "127.0.0.1:7420"
    assert config.api_listen == "127.0.0.1:0"
    assert config.advertise == ()
    assert config.source is None


def test_example_file_parses_to_the_defaults() -> None:
    """config.example.toml shows every option with its default: it must parse to exactly them."""
    example = ROOT / "config.example.toml"
    config = load_config(example, NO_ENV)
    assert config == Config()
    assert config.source == example
    import tomllib

    from node.config import _SCHEMA

    data = tomllib.loads(example.read_text())
    keys = {f"{section}.{key}" for section, table in data.items() for key in table}
    assert keys == {f"{section}.{key}" for section, key in _SCHEMA}  # every option, no more


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [node]
        listen = "0.0.0.0:9000"
        advertise = ["wss://canopy.example.org/canopy", "ws://abc.onion/canopy"]
        name = "Legal Aid"
        [api]
        listen = "127.0.0.1:7421"
        host = "canopy-metrics.internal:8443"
        metrics_public = true
        [network]
        handshake_timeout = 5
        idle_timeout = 60.5
        heartbeat = 10.0
        reconnect_min = 1.0
        reconnect_max = 30
        [sync]
        poll_interval = 0.25
        min_score = -20
        """,
    )
    config = load_config(path, NO_ENV)
    assert config == Config(
        listen="0.0.0.0:9000",
        advertise=("wss://canopy.example.org/canopy", "ws://abc.onion/canopy"),
        name="Legal Aid",
        api_listen="127.0.0.1:7421",
        api_host="canopy-metrics.internal:8443",
        metrics_public=True,
        handshake_timeout=5.0,
        idle_timeout=60.5,
        heartbeat=10.0,
        reconnect_min=1.0,
        reconnect_max=30.0,
        poll_interval=0.25,
        min_score=-20,
    )
    assert isinstance(config.handshake_timeout, float)


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nlisten = "127.0.0.1:1"\n\n[nodes]\nlisten = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert str(info.value) == f"{path}:4: unknown section [nodes]"


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '# comment\n[node]\nlisten = "127.0.0.1:1"\n\nfoo = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert f"{path}:5: unknown key node.foo" in str(info.value)


def test_top_level_key_is_not_a_section(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError, match=r":1: listen must be a \[section\]"):
        load_config(path, NO_ENV)


@pytest.mark.parametrize(
    ("text", "line", "key", "kind"),
    [
        ("[node]\nlisten = 7420\n", 2, "node.listen", "a string"),
        (
            '[node]\nname = "x"\nadvertise = "ws://a/canopy"\n',
            3,
            "node.advertise",
            "a list of strings",
        ),
        ("[node]\nadvertise = [1, 2]\n", 2, "node.advertise", "a list of strings"),
        ('[network]\n\n\nheartbeat = "30"\n', 4, "network.heartbeat", "a number"),
        ("[network]\nidle_timeout = true\n", 2, "network.idle_timeout", "a number"),
        ("[sync]\nmin_score = 1.5\n", 2, "sync.min_score", "an integer"),
        ("[sync]\nmin_score = false\n", 2, "sync.min_score", "an integer"),
    ],
)
def test_wrong_type_names_key_and_line(
    tmp_path: Path, text: str, line: int, key: str, kind: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert str(info.value) == f"{path}:{line}: {key} must be {kind}"


def test_negative_number_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[network]\nheartbeat = -1\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: network.heartbeat must not be negative"):
        load_config(path, NO_ENV)


@pytest.mark.parametrize(
    "text",
    ["[node\nlisten = 1\n", "[node]\nlisten = \n", '[node]\nlisten = "a"\nlisten = "b"\n', "\x00"],
)
def test_toml_syntax_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_unreadable_or_non_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", NO_ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, NO_ENV)  # a directory
    path = tmp_path / "latin1.toml"
    path.write_bytes('[node]\nname = "Caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, NO_ENV)


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("nohost", "node.listen must be HOST:PORT"),
        ("127.0.0.1", "node.listen must be HOST:PORT"),
        ("127.0.0.1:port", "node.listen must be HOST:PORT"),
        ("::1:7420", "node.listen must be HOST:PORT"),  # IPv6 needs brackets
        ("127.0.0.1:65536", "node.listen port must be 0..65535"),
    ],
)
def test_bad_listen(tmp_path: Path, listen: str, message: str) -> None:
    path = write(tmp_path, f'[node]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert str(info.value).startswith(str(path))
    assert str(info.value).endswith(message)


def test_bad_listen_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nname = "x"\n\nlisten = "nohost"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, NO_ENV)
    assert str(info.value) == f"{path}:4: node.listen must be HOST:PORT"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[api]\nlisten = "loopback"\n', "api.listen must be HOST:PORT"),
        ('[node]\nadvertise = ["http://a.example/canopy"]\n', "node.advertise entries"),
        ('[node]\nadvertise = ["ws://"]\n', "node.advertise entries"),
        ("[network]\nreconnect_min = 0\n", "reconnect_min must be > 0"),
        ("[network]\nreconnect_min = 10\nreconnect_max = 5\n", "reconnect_min must be > 0"),
        ("[sync]\npoll_interval = 0\n", "poll_interval must be > 0"),
        ('[api]\nmetrics_public = "yes"\n', "api.metrics_public must be true or false"),
        ('[api]\nhost = "http://evil.example/"\n', "api.host must be HOST or HOST:PORT"),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), NO_ENV)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("[sync]\npoll_interval = nan\n", {}),
        ("[network]\nhandshake_timeout = nan\n", {}),
        ("", {"CANOPY_NETWORK_RECONNECT_MIN": "nan"}),
    ],
)
def test_nan_refused(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text), env)


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nlisten = "127.0.0.1:1111"\nname = "File"\n')
    env = {
        "CANOPY_NODE_LISTEN": "0.0.0.0:2222",
        "CANOPY_NODE_ADVERTISE": "wss://a.example/canopy,ws://b.example:1/canopy",
        "CANOPY_NETWORK_HEARTBEAT": "7.5",
        "CANOPY_SYNC_MIN_SCORE": "-3",
        "CANOPY_DATA": "/ignored",  # not a config key
        "CANOPY_PASSPHRASE": "ignored",
    }
    config = load_config(path, env)
    assert config.listen == "0.0.0.0:2222"
    assert config.name == "File"  # untouched keys come from the file
    assert config.advertise == ("wss://a.example/canopy", "ws://b.example:1/canopy")
    assert config.heartbeat == 7.5
    assert config.min_score == -3
    assert load_config(None, {"CANOPY_NODE_LISTEN": "10.0.0.1:7420"}).listen == "10.0.0.1:7420"


def test_env_is_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANOPY_NODE_LISTEN", "127.0.0.1:4444")
    assert load_config(None).listen == "127.0.0.1:4444"
    monkeypatch.setenv("CANOPY_NODE_LISTEN", "bad")
    with pytest.raises(ConfigError, match=r"node\.listen must be HOST:PORT"):
        load_config(None)


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("CANOPY_NETWORK_IDLE_TIMEOUT", "soon", "CANOPY_NETWORK_IDLE_TIMEOUT must be float"),
        ("CANOPY_SYNC_MIN_SCORE", "1.5", "CANOPY_SYNC_MIN_SCORE must be int"),
        ("CANOPY_NETWORK_HEARTBEAT", "-2", "CANOPY_NETWORK_HEARTBEAT must not be negative"),
        ("CANOPY_NODE_LISTEN", "nohost", "node.listen must be HOST:PORT"),
    ],
)
def test_bad_env_value(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, {var: value})


def test_bad_env_listen_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nlisten = "127.0.0.1:7420"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {"CANOPY_NODE_LISTEN": "nohost"})
    assert "CANOPY_NODE_LISTEN" in str(info.value)
    assert str(path) not in str(info.value)


@pytest.mark.parametrize(
    ("listen", "advertise", "expected"),
    [
        ("127.0.0.1:7420", (), ("ws://127.0.0.1:7420/canopy",)),
        ("0.0.0.0:9000", (), ("ws://127.0.0.1:9000/canopy",)),
        (":9001", (), ("ws://127.0.0.1:9001/canopy",)),
        ("node.example.org:80", (), ("ws://node.example.org:80/canopy",)),
        ("0.0.0.0:1", ("wss://x.example/canopy",), ("wss://x.example/canopy",)),
    ],
)
def test_advertised(listen: str, advertise: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert Config(listen=listen, advertise=advertise).advertised() == expected


def test_advertised_ipv6_keeps_brackets() -> None:
    from protocol.invite import check_address

    (address,) = Config(listen="[::1]:7420").advertised()
    assert address == "ws://[::1]:7420/canopy"
    assert check_address(address) is None


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:7420") == ("127.0.0.1", 7420)
    assert split_host_port(" [::1]:80 ") == ("::1", 80)
    assert split_host_port(":0") == ("", 0)
    for bad in ("", "host", "host:", "host:123456", "a b:1", "[::1]", "host:-1"):
        with pytest.raises(ValueError):
            split_host_port(bad)
