"""Markdown written by the training code (MODEL_CARD.md) rendered for a page, safely."""

from __future__ import annotations

from markdown_it import MarkdownIt

# CommonMark with tables; raw HTML in the source is escaped, not passed through, and links with
# javascript:, vbscript:, file: or data: (other than images) are refused by markdown-it's validateLink.
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render(text: str) -> str:
    """HTML for `text`; safe to mark safe in a template (no raw HTML survives)."""
    return _MD.render(text)
