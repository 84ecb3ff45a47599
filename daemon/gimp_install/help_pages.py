"""The dialog's Help: a GIMP help domain with docs/plugin.md as HTML, and the little
Markdown converter it takes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from neural_style.shared.defaults import PLUGIN_PROCEDURE

HELP_ID = PLUGIN_PROCEDURE


def docs_source() -> Path | None:
    """docs/plugin.md of this checkout (absent from a wheel install)."""
    import neural_style.plugin as plugin_pkg

    path = Path(plugin_pkg.__file__).resolve().parent.parent / "docs" / "plugin.md"
    return path if path.is_file() else None


def write_help(folder: Path) -> None:
    """GIMP help domain: help/en/gimp-help.xml mapping the procedure to plugin.html (made
    from docs/plugin.md, with its pictures), so the dialog's Help button opens this page."""
    src = docs_source()
    en = folder / "en"
    en.mkdir(parents=True, exist_ok=True)
    text = (
        src.read_text(encoding="utf-8")
        if src
        else ("# Neural Style\n\nSee the project's docs/plugin.md.\n")
    )
    (en / "plugin.md").write_text(text, encoding="utf-8")
    (en / "plugin.html").write_text(markdown_to_html(text), encoding="utf-8")
    if src is not None:
        for img in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text):
            pic = src.parent / img
            if pic.is_file() and "/" not in img:
                shutil.copy2(pic, en / img)
    (en / "gimp-help.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gimp-help>\n'
        f'  <help-item help-id="{HELP_ID}" help-page="plugin.html"/>\n</gimp-help>\n'
    )


def _inline(text: str) -> str:
    import html

    out = html.escape(text, quote=False)
    out = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", r'<img alt="\1" src="\2">', out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def markdown_to_html(text: str) -> str:
    """The little Markdown docs/plugin.md uses (headings, lists, tables, code, pictures)."""
    import html

    out: list[str] = []
    lines = text.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(html.escape(lines[i]))
                i += 1
            out.append("<pre>" + "\n".join(block) + "</pre>")
        elif m := re.match(r"(#{1,6}) (.*)", line):
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append("".join(f"<td>{_inline(c)}</td>" for c in cells))
                i += 1
            out.append("<table border=1>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>")
            continue
        elif re.match(r"\s*([-*]|\d+\.) ", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*([-*]|\d+\.) ", lines[i]):
                item = re.sub(r"\s*([-*]|\d+\.) ", "", lines[i], count=1)
                i += 1
                while i < len(lines) and lines[i].startswith("   ") and lines[i].strip():
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{_inline(item)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Neural Style</title>'
        "<style>body{font-family:sans-serif;max-width:50em;margin:auto}img{max-width:100%}"
        "</style></head><body>\n" + body + "\n</body></html>\n"
    )
