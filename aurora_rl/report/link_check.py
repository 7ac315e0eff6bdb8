"""Checks that every src/href of a report page points at a file next to it."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def page_links(index_html: str | Path) -> list[str]:
    parser = _Links()
    parser.feed(Path(index_html).read_text(encoding="utf-8"))
    return parser.links


def check_report_links(index_html: str | Path) -> list[str]:
    """Every src/href of the page that does not resolve to an existing file; [] when all do.

    Links to places inside the page (``#id``) pass. URLs with a scheme and absolute paths fail:
    the report must stay whole when its folder is copied elsewhere.
    """
    base = Path(index_html).parent
    broken = []
    for link in page_links(index_html):
        parts = urlsplit(link)
        if not parts.scheme and not parts.netloc and not parts.path:
            continue  # "#fragment" only
        if parts.scheme or parts.netloc or parts.path.startswith("/"):
            broken.append(link)
        elif not (base / unquote(parts.path)).is_file():
            broken.append(link)
    return broken
