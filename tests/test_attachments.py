"""Attachments between real `canopy run` processes on 127.0.0.1 (docs/spec/85-attachments.md):
a round trip A -> B byte-identical, one through a relay that cannot read it (and whose data
directory holds no attachment byte in clear), metadata stripped before sealing, purge on
withdrawal on three nodes, and resumption after kill -9 mid-transfer."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from pathlib import Path

import pytest

from node.demo import NodeProcess, scan_for, wait_until
from tests.conftest import Net
from tests.test_multinode import _all, connected, link, three_nodes

pytestmark = pytest.mark.timeout(240)

# Distinctive bytes that must never appear in clear in any data directory.
PLAIN = b"ATTACHMENT-PLAINTEXT-7f3a9c-"


def distinctive(size: int) -> bytes:
    """`size` bytes: the marker, then random bytes, repeated (every chunk holds the marker)."""
    block = PLAIN + os.urandom(4096 - len(PLAIN))
    return (block * (size // len(block) + 1))[:size]


async def attachments_of(node: NodeProcess, gid: str) -> list[dict[str, object]] | None:
    """The attachment rows `show` gives for guide `gid`, or None while it is not readable."""
    code, out, _ = await node.cli("show", gid, "--json", check=False)
    if code != 0:
        return None
    import json

    rows: list[dict[str, object]] = json.loads(out)["attachments"]
    return rows


async def complete(node: NodeProcess, gid: str, count: int) -> bool:
    rows = await attachments_of(node, gid)
    return rows is not None and len(rows) == count and all(r["missing"] == 0 for r in rows)


async def publish_with(
    node: NodeProcess, folder: Path, to: str, attach: list[Path], *extra: str
) -> tuple[str, str]:
    guide = folder / "guide.md"
    if not guide.exists():
        guide.write_text("# Field kit\n\nThe kit, attached.\n")
    args = ["publish", "guide", str(guide), "--to", to]
    for path in attach:
        args += ["--attach", str(path)]
    _, out, _ = await node.cli(*args, *extra)
    gid = out.strip().splitlines()[-1].split()[0]
    return gid, out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_attachments_round_trip_a_to_b_byte_identical(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    for node in (a, b):
        await node.start()
    await link(a, b)
    await wait_until("link", lambda: _all(connected(a, 1), connected(b, 1)))
    folder = tmp_path / "src"
    folder.mkdir()
    big = folder / "workbook.bin"
    big.write_bytes(os.urandom(3 * 262_144 + 12_345))  # four chunks, the last short
    small = folder / "notes.txt"
    small.write_bytes(b"bring water\n")
    empty = folder / "empty.dat"
    empty.write_bytes(b"")
    (folder / "guide.md").write_text("# Kit\n\nSee [the notes](notes.txt).\n")
    gid, _ = await publish_with(a, folder, "peers", [big, empty])

    await wait_until("attachments on B", lambda: complete(b, gid, 3), timeout=60)
    rows = await attachments_of(b, gid)
    assert rows is not None
    assert {(r["name"], r["size"]) for r in rows} == {
        ("workbook.bin", big.stat().st_size),
        ("empty.dat", 0),
        ("notes.txt", small.stat().st_size),  # linked from the Markdown: attached too
    }
    out = tmp_path / "out"
    out.mkdir()
    await b.cli("attachment", "save", gid, "--all", str(out))
    for src in (big, small, empty):
        assert digest(out / src.name) == digest(src)
    one = tmp_path / "one.bin"
    await b.cli("attachment", "save", gid, "workbook.bin", "--out", str(one))
    assert digest(one) == digest(big)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    code, _, err = await b.cli(
        "attachment", "save", gid, "nope.bin", "--out", str(one), check=False
    )
    assert code == 1 and "no attachment" in err and "Traceback" not in err


async def test_attachment_through_a_relay_that_cannot_read_it(net: Net, tmp_path: Path) -> None:
    a, b, c = await three_nodes(net)  # A - B - C: B relays what A seals to C only
    folder = tmp_path / "src"
    folder.mkdir()
    secret = folder / "map.bin"
    secret.write_bytes(distinctive(600_000))
    gid, _ = await publish_with(a, folder, c.node_id, [secret])
    os.unlink(folder / "guide.md")

    await wait_until("attachment on C", lambda: complete(c, gid, 1), timeout=60)
    saved = tmp_path / "saved.bin"
    await c.cli("attachment", "save", gid, "map.bin", "--out", str(saved))
    assert digest(saved) == digest(secret)
    saved.unlink()
    secret.unlink()

    # B holds the guide and its three chunks but can read neither.
    status = await b.json("status")
    assert status["records"].get("chunk") == 3
    code, _, err = await b.cli("show", gid, check=False)
    assert code == 1 and "cannot read" in err
    for node in (a, b, c):
        await node.stop()
    scanned, hits = scan_for(tmp_path, [PLAIN, PLAIN[:16]])
    assert scanned > 6 and hits == []


@pytest.mark.timeout(480)  # five nodes and 40 MB over four hops on a loaded machine
async def test_a_40_mb_attachment_passes_a_relay_that_trusts_neither_its_author_nor_reader(
    net: Net, tmp_path: Path
) -> None:
    """A - B - R - C - D: R trusts only B and C, so A's records are of an unknown author
    there, held within MAX_UNKNOWN_AUTHOR_BYTES (16 MiB); its attachment chunks have a bound
    of their own (docs/spec/60, "Storage caps"), so 40 MB of them pass R to D intact."""
    from protocol import limits

    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    r = await net.node("R", "Relay Hub")
    c = await net.node("C", "Gamma Shelter")
    d = await net.node("D", "Delta Clinic")
    nodes = (a, b, r, c, d)
    for node in nodes:
        await node.start()
    for left, right in itertools.pairwise(nodes):
        await link(left, right)
    await wait_until(
        "the chain linked",
        lambda: _all(*(connected(n, k) for n, k in zip(nodes, (1, 2, 2, 2, 1), strict=True))),
        timeout=90,
    )
    folder = tmp_path / "src"
    folder.mkdir()
    archive = folder / "archive.bin"
    size = 40_000_000
    with archive.open("wb") as f:  # every 4 KiB holds the marker the scan looks for
        for _ in range(size // 4_000_000):
            f.write(distinctive(4_000_000))
    assert size > limits.MAX_UNKNOWN_AUTHOR_BYTES
    gid, _ = await publish_with(a, folder, d.node_id, [archive])
    os.unlink(folder / "guide.md")

    await wait_until("the attachment whole on D", lambda: complete(d, gid, 1), timeout=180)
    saved = tmp_path / "saved.bin"
    await d.cli("attachment", "save", gid, "archive.bin", "--out", str(saved))
    assert digest(saved) == digest(archive)
    saved.unlink()
    archive.unlink()
    status = await r.json("status")
    chunks = -(-size // limits.ATTACHMENT_CHUNK_BYTES)
    assert status["records"].get("chunk") == chunks  # every chunk held at the relay
    assert not status["rejected"].get("quota_author_storage")
    code, _, err = await r.cli("show", gid, check=False)
    assert code == 1 and "cannot read" in err
    for node in nodes:
        await node.stop()
    scanned, hits = scan_for(r.data, [PLAIN, PLAIN[:16]])
    assert scanned > 2 and hits == []


def gps_jpeg(path: Path) -> None:
    """A JPEG as a phone writes it: EXIF with GPS and a camera name, rotated by EXIF, XMP, a
    comment."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    exif[0x010F] = "FieldPhone"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (1.0, 17.0, 30.0)
    gps[3], gps[4] = "E", (36.0, 49.0, 10.0)
    Image.new("RGB", (40, 20), (200, 10, 10)).save(
        path,
        "JPEG",
        exif=exif,
        comment=b"taken at the safe house",
        xmp=b"<x:xmpmeta>who</x:xmpmeta>",
    )


def authored_pdf(path: Path) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.add_metadata({"/Author": "Jane Secretname", "/Title": "Evacuation plan"})
    xmp = DecodedStreamObject()
    xmp.set_data(b"<x:xmpmeta><dc:creator>Jane Secretname XMP</dc:creator></x:xmpmeta>")
    xmp[NameObject("/Type")] = NameObject("/Metadata")
    xmp[NameObject("/Subtype")] = NameObject("/XML")
    writer._root_object[NameObject("/Metadata")] = writer._add_object(xmp)
    with path.open("wb") as f:
        writer.write(f)


async def test_metadata_is_stripped_from_a_gps_jpeg_and_an_authored_pdf(
    net: Net, tmp_path: Path
) -> None:
    from PIL import Image
    from pypdf import PdfReader

    a = await net.node("A", "Alpha Legal")
    folder = tmp_path / "src"
    folder.mkdir()
    photo, paper = folder / "photo.jpg", folder / "plan.pdf"
    gps_jpeg(photo)
    authored_pdf(paper)
    assert b"FieldPhone" in photo.read_bytes() and b"Secretname" in paper.read_bytes()
    gid, out = await publish_with(a, folder, "peers", [photo, paper])
    lines = out.splitlines()
    assert any(line.startswith("photo.jpg: removed") and "GPS" in line for line in lines)
    assert any(
        line.startswith("plan.pdf: removed") and "Author" in line and "XMP" in line
        for line in lines
    )
    saved = tmp_path / "saved"
    saved.mkdir()
    await a.cli("attachment", "save", gid, "--all", str(saved))
    clean_photo, clean_paper = saved / "photo.jpg", saved / "plan.pdf"
    data = clean_photo.read_bytes()
    assert b"FieldPhone" not in data and b"safe house" not in data and b"xmpmeta" not in data
    with Image.open(clean_photo) as image:
        assert not image.getexif() and image.size == (20, 40)  # rotation applied, then dropped
    data = clean_paper.read_bytes()
    assert b"Secretname" not in data
    reader = PdfReader(clean_paper)
    assert not reader.metadata and "/Metadata" not in reader.trailer["/Root"]
    assert len(reader.pages) == 1

    # --keep-metadata: the author chose to attach the files as they are.
    (folder / "guide.md").write_text("# As is\n\nunchanged files\n")
    kept_id, out = await publish_with(a, folder, "peers", [photo, paper], "--keep-metadata")
    assert "removed" not in out
    kept = tmp_path / "kept"
    kept.mkdir()
    await a.cli("attachment", "save", kept_id, "--all", str(kept))
    assert digest(kept / "photo.jpg") == digest(photo)
    assert digest(kept / "plan.pdf") == digest(paper)


async def test_a_damaged_image_is_refused_in_one_line_before_anything_is_stored(
    net: Net, tmp_path: Path
) -> None:
    a = await net.node("A", "Alpha Legal")
    folder = tmp_path / "src"
    folder.mkdir()
    bad = folder / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / "guide.md").write_text("# Broken\n\n![x](broken.png)\n")
    code, _, err = await a.cli("publish", "guide", str(folder / "guide.md"), check=False)
    assert code == 1 and "broken.png" in err and "--keep-metadata" in err
    assert len(err.strip().splitlines()) == 1
    assert (await a.json("status"))["records"] == {}


async def chunks_held(node: NodeProcess) -> int:
    return int((await node.json("status"))["records"].get("chunk", 0))


async def test_withdrawal_purges_the_chunks_on_three_nodes(net: Net, tmp_path: Path) -> None:
    a, b, c = await three_nodes(net)
    folder = tmp_path / "src"
    folder.mkdir()
    kit = folder / "kit.bin"
    kit.write_bytes(os.urandom(2 * 262_144 + 10))  # three chunks
    gid, _ = await publish_with(a, folder, "network", [kit])
    await wait_until("chunks everywhere", lambda: _all(complete(b, gid, 1), complete(c, gid, 1)))
    assert [await chunks_held(n) for n in (a, b, c)] == [3, 3, 3]

    await a.cli("withdraw", gid)

    async def purged() -> bool:
        return [await chunks_held(n) for n in (a, b, c)] == [0, 0, 0]

    await wait_until("chunks purged on every node", purged, timeout=60)
    for node in (b, c):
        code, _, err = await node.cli("show", gid, check=False)
        assert code == 1 and "withdrawn" in err


async def test_a_tampered_chunk_is_refused_and_its_sender_penalised(tmp_path: Path) -> None:
    import nacl.utils

    from protocol.attachment import seal_chunk
    from protocol.record import Kind, Record, Scope
    from tests.test_network_adversarial import _count_at_least, rejected, trusted_raw_peer

    node = NodeProcess(tmp_path, "T", "Target")
    await node.init()
    await node.start()
    try:
        _, code, _ = await node.cli("invite", "--address", node.address)
        from protocol.invite import Invite

        invite = Invite.from_code(code.strip())
        peer, identity = await trusted_raw_peer(node, invite)
        now = int(__import__("time").time() * 1000)
        key, tag = nacl.utils.random(32), nacl.utils.random(16)

        def chunk(index: int, payload: bytes | None = None) -> Record:
            return Record.create(
                identity,
                Kind.CHUNK,
                created=now,
                expires=now + 86_400_000,
                scope=Scope.NETWORK,
                payload=payload or seal_chunk(key, tag, index, os.urandom(1000)),
            )

        good = chunk(0)
        tampered = bytearray(chunk(1).to_bytes())
        tampered[-100] ^= 0x01  # a ciphertext byte: the author's signature no longer holds
        malformed = chunk(2, b"\x01" + tag + b"\x00\x00\x00\x02")  # signed, but no ciphertext
        before = await node.json("peers")
        await peer.send(peer.session.records([bytes(tampered), malformed.to_bytes()]))
        await peer.send(peer.session.records([good.to_bytes()]))
        await wait_until("good chunk stored", lambda: chunks_held(node))
        await wait_until(
            "both refusals counted",
            lambda: _count_at_least(node, "record_VerificationError", 1),
        )
        counts = await rejected(node)
        assert counts.get("record_VerificationError") == 1
        assert counts.get("record_DecodeError") == 1
        assert await chunks_held(node) == 1
        after = await node.json("peers")
        score = {p["id"]: p["score"] for p in after["peers"]}
        earlier = {p["id"]: p["score"] for p in before["peers"]}
        raw_id = str(identity.node_id)
        assert score[raw_id] is not None and score[raw_id] < (earlier.get(raw_id) or 100)
        await peer.close()
    finally:
        await node.stop()


async def test_transfer_resumes_after_kill_9_without_asking_stored_chunks_again(
    net: Net, tmp_path: Path
) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    for node in (a, b):
        await node.start()
    await link(a, b)
    await wait_until("link", lambda: _all(connected(a, 1), connected(b, 1)))
    folder = tmp_path / "src"
    folder.mkdir()
    big = folder / "archive.bin"
    total = 256  # chunks: 64 MiB, more than one peer's byte burst, so it takes a while
    with big.open("wb") as f:
        for _ in range(total):
            f.write(os.urandom(262_144))
    publishing = asyncio.ensure_future(publish_with(a, folder, "peers", [big]))

    async def part_way() -> bool:
        held = (await b.api("/v1/status"))["records"].get("chunk", 0)
        return 8 <= held < total - 8

    await wait_until("B part way through", part_way, timeout=120)
    await b.kill9()
    gid, _ = await publishing
    held = await chunks_held(b)  # what B's store kept through kill -9
    assert 0 < held < total

    await b.start()
    await wait_until("attachment complete on B", lambda: complete(b, gid, 1), timeout=120)
    traffic = (await b.json("status"))["traffic"]
    chunk_record = 262_144 + 16 + 21 + 160  # payload and the record around it, about
    assert traffic["record_bytes_received"] <= (total - held) * chunk_record + 1_048_576
    saved = tmp_path / "saved.bin"
    await b.cli("attachment", "save", gid, "archive.bin", "--out", str(saved))
    assert digest(saved) == digest(big)
