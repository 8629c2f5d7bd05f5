"""Clean-ups the importer applies to what real DEEP and AI4OS metadata files hold.

Each function is pure and returns the cleaned value together with notes that say what was
rewritten or dropped, so `deepmarket import` can report every change it made.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import urlsplit

# Hosts and URL fragments that cookiecutter templates put in and authors never replaced.
PLACEHOLDER_HOSTS = ("example.com", "example.org", "example.net", "localhost")
PLACEHOLDER_PARTS = ("add-some", "add_some", "your-", "your_", "demo_url", "todo", "xxx")

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR = re.compile(r"([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>,]+)")
_SAFE_URL = re.compile(r"^https?://[^\s<>\"'()]+$")


def placeholder_reason(url: str) -> str | None:
    """Why `url` looks like a template placeholder, or None when it looks real."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or "." not in host or "_" in host:
        return f"host {host or '(none)'!r} is not a real domain"
    if host in PLACEHOLDER_HOSTS or host.endswith(tuple("." + h for h in PLACEHOLDER_HOSTS)):
        return f"{host} is a placeholder domain"
    lowered = url.lower()
    for part in PLACEHOLDER_PARTS:
        if part in host or (part in ("add-some", "add_some") and part in lowered):
            return f"it contains the template text {part!r}"
    return None


def clean_url(value: object, where: str) -> tuple[str | None, list[str]]:
    """An http(s) URL worth keeping, or None with a note saying why it was dropped."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, []
    if not isinstance(value, str):
        return None, [f"{where}: {value!r} is not a URL; dropped"]
    url = value.strip()
    if url.startswith("www."):
        url = "https://" + url
    if not re.match(r"^https?://", url, re.I) or any(c.isspace() for c in url):
        return None, [f"{where}: {value!r} is not an http(s) URL; dropped"]
    reason = placeholder_reason(url)
    if reason:
        return None, [f"{where}: {url!r} dropped: a placeholder link ({reason})"]
    return url, []


def _attrs(text: str) -> dict[str, str]:
    return {k.lower(): v.strip("'\"") for k, v in _ATTR.findall(text)}


def _safe(url: str) -> str | None:
    url = html.unescape(url.strip())
    return url if _SAFE_URL.match(url) else None


def markdown_from_html(text: str, where: str) -> tuple[str, list[str]]:
    """Replace raw HTML tags by Markdown: <img> becomes an image, <a> a link, <br> a line
    break, <video>/<source> a link to the video; every other tag is dropped. Images and
    links without a safe http(s) URL are dropped. One note sums up what was done."""
    if "<" not in text:
        return text, []
    done: list[str] = []
    dropped: list[str] = []
    out: list[str] = []
    pos = 0
    link_open: str | None = None
    for match in _TAG.finditer(text):
        out.append(text[pos : match.start()])
        pos = match.end()
        closing, name, rest = match.group(1), match.group(2).lower(), match.group(3)
        if name.startswith("img") and name != "img":  # <imgclass='fit' ...>: a missing space
            name, rest = "img", name[3:] + rest
        attrs = _attrs(rest)
        if name == "img" and not closing:
            src = _safe(attrs.get("src", ""))
            if src:
                out.append(f"![{attrs.get('alt', '').strip()}]({src})")
                done.append("<img> as a Markdown image")
            else:
                dropped.append("an <img> without an http(s) src")
        elif name == "a":
            if closing:
                if link_open is not None:
                    out.append(f"]({link_open})")
                    link_open = None
            else:
                href = _safe(attrs.get("href", ""))
                if href:
                    out.append("[")
                    link_open = href
                    done.append("<a> as a Markdown link")
                else:
                    dropped.append("an <a> without an http(s) href")
        elif name == "br":
            out.append("  \n")
            done.append("<br> as a line break")
        elif name == "source" and not closing:
            src = _safe(attrs.get("src", ""))
            if src:
                out.append(f"[video]({src})")
                done.append("<video> as a link")
        elif name in ("p", "div") and closing:
            out.append("\n\n")
        elif name in ("b", "strong"):
            out.append("**")
        elif name in ("i", "em"):
            out.append("*")
        elif name in ("video", "p", "div", "center", "span", "font", "figure"):
            pass  # a wrapper: its content stays
        else:
            dropped.append(f"<{name}>")
    out.append(text[pos:])
    if link_open is not None:  # an <a> never closed: keep its text, drop the link
        result = "".join(out)
        cut = result.rfind("[")
        out = [result[:cut] + result[cut + 1 :]]
    result = "".join(out)
    notes = []
    if done:
        kinds = ", ".join(sorted(set(done)))
        notes.append(f"{where}: raw HTML rewritten as Markdown ({kinds})")
    if dropped:
        notes.append(f"{where}: raw HTML dropped: {', '.join(sorted(set(dropped)))}")
    return result, notes


def description_text(value: object, where: str = "description") -> tuple[str, list[str]]:
    """DEEP v1 descriptions are lists of lines; both formats may hold raw HTML."""
    if isinstance(value, list):
        text = "\n".join(str(line).rstrip(" ") for line in value)
    elif value is None:
        text = ""
    else:
        text = str(value)
    text, notes = markdown_from_html(text, where)
    text = "\n".join(
        line.rstrip() if not line.endswith("  ") else line for line in text.split("\n")
    )
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, notes


def one_line(value: object) -> str:
    return " ".join(str(value if value is not None else "").split())


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a sentence or a word, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    sentence = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if sentence >= limit // 2:
        return head[: sentence + 1]
    word = head.rfind(" ")
    return (head[:word] if word >= limit // 2 else head).rstrip(" ,;:-") + "…"


def first_sentence(text: str) -> str:
    plain = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)  # no images
    plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", plain)  # links as their text
    plain = re.sub(r"[#*_`>]", "", plain)
    plain = one_line(plain)
    match = re.match(r"(.+?[.!?])(\s|$)", plain)
    return match.group(1) if match else plain


def tag_of(word: str) -> str | None:
    """A free keyword as a valid tag: lowercase words joined by single separators; a
    trailing '+' (DeepLabV3+) becomes '-plus' rather than vanishing."""
    text = word.strip().lower()
    text = re.sub(r"\+$", "-plus", text)
    text = re.sub(r"\+\+", "pp", text)
    text = re.sub(r"[^a-z0-9+._ -]+", "-", text)
    text = re.sub(r"([-_.+ ])[-_.+ ]+", r"\1", text).strip("-_.+ ")
    if len(text) > 40:
        text = text[:40].rstrip("-_.+ ")
    return text or None


def iso_date(value: object) -> str | None:
    """YYYY-MM-DD from a date, a datetime or the usual spellings of one."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value or "").strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%d-%m-%Y", "%d/%m/%Y", "%Y.%m.%d"):
        for candidate in (text, text[:10]):
            try:
                return dt.datetime.strptime(candidate, fmt).date().isoformat()
            except ValueError:
                continue
    return None


# Distinctive sentences of the licence texts authors commit as LICENSE; the text alone
# cannot tell GPL "only" from "or later", so those are read as "only" with a note.
LICENCE_TEXTS = (
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("MIT", ("permission is hereby granted, free of charge",)),
    ("AGPL-3.0-only", ("gnu affero general public license", "version 3")),
    ("LGPL-3.0-only", ("gnu lesser general public license", "version 3")),
    ("GPL-3.0-only", ("gnu general public license", "version 3")),
    ("GPL-2.0-only", ("gnu general public license", "version 2")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("CC-BY-4.0", ("attribution 4.0 international",)),
    ("Unlicense", ("this is free and unencumbered software",)),
)


def licence_from_text(text: str) -> str | None:
    """The SPDX id of a LICENSE file's text, when it is one of the common licences."""
    head = " ".join(text[:4000].lower().split())
    for spdx, phrases in LICENCE_TEXTS:
        if all(phrase in head for phrase in phrases):
            return spdx
    return None
