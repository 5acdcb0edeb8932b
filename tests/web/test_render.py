"""Peer-supplied text as a page shows it (node/web/render.py): Markdown without raw HTML,
sanitised by nh3; bidi controls shown, never obeyed."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from node.web.render import markdown, peer_text


class Elements(HTMLParser):
    """Every element and attribute of a fragment, as a browser would build them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "![x](https://tracker.example/pixel.png)",
        '<a href="#" onclick="alert(1)">x</a>',
        "<iframe src=//evil.example></iframe>",
        "<style>body{display:none}</style>",
    ],
)
def test_markdown_keeps_nothing_that_runs_or_loads(text: str) -> None:
    for tag, attrs in Elements(str(markdown(text))).found:
        assert tag not in ("script", "img", "iframe", "style", "object", "embed")
        assert not any(name.startswith("on") or name == "style" for name in attrs)
        href = attrs.get("href", "").strip().lower()
        assert not href or href.startswith(("https:", "http:", "mailto:", "#"))


def test_markdown_keeps_what_a_guide_needs() -> None:
    html = str(markdown("# T\n\n**b** _i_ [l](https://example.org)\n\n- one\n\n```\ncode\n```"))
    assert "<h1>T</h1>" in html and "<strong>b</strong>" in html and "<em>i</em>" in html
    assert 'href="https://example.org"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert "<li>one</li>" in html and "<pre><code>" in html


def test_bidi_controls_are_shown_not_obeyed() -> None:
    for shown in (str(peer_text("abc\u202edef")), str(markdown("abc\u2067def"))):
        assert "\u202e" not in shown and "\u2067" not in shown
        assert "\\u202e" in shown or "\\u2067" in shown


def test_peer_text_is_escaped_and_isolated() -> None:
    assert str(peer_text("<b>x</b> & y")) == "<bdi>&lt;b&gt;x&lt;/b&gt; &amp; y</bdi>"
