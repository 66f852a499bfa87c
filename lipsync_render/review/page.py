"""The review page: one self-contained HTML file (inline CSS, script and SVG, posters as data: URIs; no external
script, font or image), so it opens offline and can be mailed or archived as it is.

One card per output, flagged ones first (each says why, in words and not by colour alone); two buttons sort by
the flag or by name (``aria-pressed`` says which); everything is reachable with the keyboard and focus is always
visible. Each card's chart draws mouth motion and loudness per frame, each scaled to its own peak, with the best
lag and its correlation below it.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lipsync_render.review.signals import MAX_GOOD_LAG, MIN_R
from lipsync_render.review.summary import OutputReview

CHART_WIDTH, CHART_HEIGHT = 340, 90

STYLE = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --bad: #a40e26; --ok: #1a7f37;
  --mouth: #0550ae; --audio: #bc4c00; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  background: #f6f8fa; }
h1 { font-size: 22px; margin: 0 0 4px; }
.summary { color: var(--muted); margin: 0 0 16px; }
.status { color: var(--muted); }
.controls { display: flex; gap: 8px; align-items: center; margin-bottom: 16px; }
button { font: inherit; padding: 6px 14px; border: 1px solid var(--line); border-radius: 6px; background: #fff;
  color: var(--ink); cursor: pointer; }
button[aria-pressed="true"] { background: var(--ink); color: #fff; border-color: var(--ink); }
button:focus-visible, a:focus-visible, .card:focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
ol.cards { list-style: none; margin: 0; padding: 0; display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px; }
.card.flagged { border: 2px solid var(--bad); }
.card h2 { font-size: 16px; margin: 0 0 8px; word-break: break-all; }
.badge { display: inline-block; font-weight: 600; padding: 2px 8px; border-radius: 12px; margin-bottom: 8px; }
.badge.bad { background: #ffebe9; color: var(--bad); }
.badge.good { background: #dafbe1; color: var(--ok); }
.card img { display: block; width: 100%; height: auto; border-radius: 6px; background: #000; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 10px 0; }
dt { color: var(--muted); }
dd { margin: 0; }
svg { display: block; width: 100%; height: auto; background: #fbfbfc; border: 1px solid var(--line);
  border-radius: 6px; }
.legend { font-size: 13px; color: var(--muted); margin: 4px 0 0; }
.legend .mouth { color: var(--mouth); font-weight: 600; }
.legend .audio { color: var(--audio); font-weight: 600; }
"""

SCRIPT = """
(function () {
  var list = document.getElementById("cards");
  var buttons = Array.prototype.slice.call(document.querySelectorAll("button[data-sort]"));
  var status = document.getElementById("sort-status");
  function sortBy(key) {
    var cards = Array.prototype.slice.call(list.children);
    cards.sort(function (a, b) {
      if (key === "flag") {
        var d = Number(b.getAttribute("data-flag")) - Number(a.getAttribute("data-flag"));
        if (d !== 0) { return d; }
      }
      return a.getAttribute("data-name").localeCompare(b.getAttribute("data-name"));
    });
    cards.forEach(function (card) { list.appendChild(card); });
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.getAttribute("data-sort") === key)); });
    status.textContent = key === "flag" ? "Sorted: flagged first." : "Sorted by name.";
  }
  buttons.forEach(function (b) { b.addEventListener("click", function () { sortBy(b.getAttribute("data-sort")); }); });
  document.body.setAttribute("data-ready", "1");
})();
"""


def render_page(reviews: Sequence[OutputReview], base: Path) -> str:
    """The page's HTML; links to the videos are relative to ``base`` (the page's folder)."""
    ordered = sorted(reviews, key=lambda r: (not r.flagged, r.path.name))
    flagged = sum(r.flagged for r in reviews)
    cards = "\n".join(_card(r, base, n) for n, r in enumerate(ordered))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review of {len(reviews)} output{"s" if len(reviews) != 1 else ""}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>Review of {len(reviews)} output{"s" if len(reviews) != 1 else ""}</h1>
<p class="summary">{flagged} flagged: the mouth does not follow the audio (best correlation below {MIN_R} or a lag
of more than {MAX_GOOD_LAG} frame), or the output could not be read or measured. Flagged outputs come first.</p>
<div class="controls" role="group" aria-label="Sort the outputs">
<button type="button" data-sort="flag" aria-pressed="true">Flagged first</button>
<button type="button" data-sort="name" aria-pressed="false">By name</button>
<span id="sort-status" class="status" role="status" aria-live="polite">Sorted: flagged first.</span>
</div>
<ol class="cards" id="cards">
{cards}
</ol>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _card(review: OutputReview, base: Path, number: int) -> str:
    name = html.escape(review.path.name)
    verdict = _verdict(review)
    badge = "bad" if review.flagged else "good"
    poster = (
        f'<img src="data:image/jpeg;base64,{base64.b64encode(review.poster).decode()}" '
        f'alt="Poster frame of {name}: the frame where the mouth is widest open">'
        if review.poster
        else ""
    )
    facts = [
        ("Status", review.status),
        ("Duration", f"{review.duration:.2f} s, {review.frames} frames" if review.duration is not None else None),
        ("Speed", review.speed),
        ("Backend", review.backend),
        ("Precision", review.precision),
        ("Package", review.model),
    ]
    unknown = "unknown" if review.has_sidecar else "unknown (no sidecar)"
    rows = "".join(f"<dt>{label}</dt><dd>{html.escape(value or unknown)}</dd>" for label, value in facts)
    link = html.escape(_relative(review.path, base), quote=True)
    flag = int(review.flagged)
    return f"""<li class="card{" flagged" if flag else ""}" data-flag="{flag}" data-name="{name}">
<article aria-labelledby="t-{number}">
<h2 id="t-{number}"><a href="{link}">{name}</a></h2>
<span class="badge {badge}">{html.escape(verdict)}</span>
{poster}
<dl>{rows}</dl>
{_chart(review)}
</article>
</li>"""


def _verdict(review: OutputReview) -> str:
    if review.problem:
        return f"Needs a look: {review.problem}"
    if review.status != "ok":
        return f"Needs a look: status {review.status}"
    sync = review.sync
    if sync.r is None:
        return "Needs a look: mouth or audio never changes, so sync cannot be measured"
    words = f"lag {sync.lag:+d} frame{'s' if abs(sync.lag) != 1 else ''}, r {sync.r:.2f}"
    return f"Out of sync: {words}" if review.flagged else f"In sync: {words}"


def _chart(review: OutputReview) -> str:
    if review.motion is None or review.level is None:
        return ""
    count = min(len(review.motion), len(review.level))
    lines = []
    for values, colour in ((review.level[:count], "var(--audio)"), (review.motion[:count], "var(--mouth)")):
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{_points(values)}"/>')
    sync = review.sync
    said = f"best lag {sync.lag:+d} frames, r {sync.r:.2f}" if sync.r is not None else "no correlation measurable"
    label = f"Mouth motion and audio loudness over {count} frames; {said}."
    return f"""<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{html.escape(label, quote=True)}">
{"".join(lines)}
</svg>
<p class="legend"><span class="mouth">mouth motion</span> vs <span class="audio">loudness (RMS)</span>, each
scaled to its peak: {html.escape(said)}</p>"""


def _points(values: np.ndarray) -> str:
    peak = float(values.max()) if len(values) and values.max() > 0 else 1.0
    x = np.linspace(2, CHART_WIDTH - 2, max(len(values), 2))[: len(values)]
    y = CHART_HEIGHT - 4 - (CHART_HEIGHT - 8) * np.asarray(values, float) / peak
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive
        return path.resolve().as_uri()
