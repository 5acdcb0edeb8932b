"""What a page shows of text a peer wrote: Markdown rendered with raw HTML off, then
sanitised by nh3 (Ammonia); every other string escaped by Jinja2's autoescape. Bidi
controls are shown as the CLI shows them (commands/output.py's rule), never obeyed."""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from commands.output import printable

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False})
# No images (they would be fetched from another host), no raw HTML, no style: the tags a
# guide needs and nothing that runs or loads.
_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code",
    "em", "strong", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}


def peer_text(value: object) -> Markup:
    """A string someone else chose (name, title, note): escaped, bidi controls made
    visible, and isolated so that right-to-left text cannot reorder what stands beside it."""
    return Markup("<bdi>") + escape(printable(str(value))) + Markup("</bdi>")


def markdown(text: str) -> Markup:
    html = _MARKDOWN.render(printable(text))
    return Markup(
        nh3.clean(
            html,
            tags=_TAGS,
            attributes=_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


@functools.cache
def datalist(list_id: str, choices: tuple[tuple[str, str], ...]) -> Markup:
    """A <datalist> of (value, label) suggestions, rendered once: the form's country and
    language lists (hundreds of options) are the same on every page view."""
    options = "".join(
        f'<option value="{escape(value)}">{escape(label)}</option>' for value, label in choices
    )
    return Markup(f'<datalist id="{escape(list_id)}">{options}</datalist>')
