"""Server-rendered SVG plots of the metrics (matplotlib's SVG backend, no pyplot state).

The pages run under a strict CSP (`style-src 'self'`), and matplotlib's SVG carries a `<style>`
element and `style="…"` attributes. `clean_svg` turns each style declaration into the SVG
presentation attribute of the same name (fill=, stroke=, font-size=…), drops the `<style>` element
and the metadata, and adds a `<title>` and `<desc>` for screen readers. No script is ever emitted.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET  # noqa: S405 - parses only the SVG we just rendered
from collections.abc import Callable

import matplotlib

matplotlib.use("svg")  # no GUI backend, ever

from matplotlib.figure import Figure  # noqa: E402

from tumorboard.metrics.services import (  # noqa: E402
    PUBLISHED_DISCREPANCY,
    PUBLISHED_MAJOR_PATHOLOGY,
    Metrics,
)
from tumorboard.vocab import CONCORDANCE, label  # noqa: E402

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

#: CSS properties matplotlib writes that are also SVG presentation attributes
PRESENTATION = frozenset({
    "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap",
    "stroke-linejoin", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset", "opacity",
    "font-family", "font-size", "font-style", "font-weight", "font-stretch", "text-anchor",
    "dominant-baseline", "clip-path", "clip-rule", "color", "visibility", "display", "mix-blend-mode",
    "letter-spacing", "word-spacing", "white-space", "baseline-shift",
})
RC = {
    "svg.fonttype": "none",  # real <text>, not glyph paths: smaller, searchable, readable
    "svg.hashsalt": "tumorboard",  # stable ids: the same data gives the same bytes
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
ACCENT, OK, WARN, BAD, MUTED = "#1f5fbf", "#1e7a46", "#a86400", "#b3261e", "#8a93a5"


def _q(tag: str) -> str:
    return f"{{{SVG_NS}}}{tag}"


def clean_svg(svg: str, title: str, description: str = "") -> bytes:
    """matplotlib's SVG without `<style>`, `style=` or metadata; with a `<title>` (and `<desc>`)."""
    root = ET.fromstring(svg)  # noqa: S314 - our own output, not user input
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (_q("style"), _q("metadata")):
                parent.remove(child)
    for element in root.iter():
        style = element.attrib.pop("style", None)
        if not style:
            continue
        for declaration in style.split(";"):
            name, _, value = declaration.partition(":")
            name, value = name.strip(), value.strip()
            if name in PRESENTATION and value:
                element.set(name, value)
    # what the dropped <style> said: *{stroke-linejoin: round; stroke-linecap: butt} (inherited)
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    root.set("role", "img")
    root.set("aria-labelledby", "plot-title plot-desc" if description else "plot-title")
    desc = ET.Element(_q("desc"), {"id": "plot-desc"})
    desc.text = description
    heading = ET.Element(_q("title"), {"id": "plot-title"})
    heading.text = title
    if description:
        root.insert(0, desc)
    root.insert(0, heading)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _render(figure: Figure, title: str, description: str) -> bytes:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    return clean_svg(buffer.getvalue(), title, description)


def _figure(width: float = 6.4, height: float = 3.2) -> Figure:
    with matplotlib.rc_context(RC):
        return Figure(figsize=(width, height), layout="constrained")


def _empty(ax: object, text: str = "No data for this filter") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=MUTED)  # type: ignore[attr-defined]
    ax.set_axis_off()  # type: ignore[attr-defined]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def plot_times(m: Metrics) -> bytes:
    """Median and 90th percentile of each stage, in days (horizontal bars)."""
    with matplotlib.rc_context(RC):
        fig = _figure()
        ax = fig.subplots()
        stages = [s for s in m.stages]
        if not any(s.count for s in stages):
            _empty(ax)
        else:
            ys = list(range(len(stages)))
            ax.barh([y + 0.2 for y in ys], [s.median_days or 0 for s in stages], height=0.4,
                    color=ACCENT, label="Median")
            ax.barh([y - 0.2 for y in ys], [s.p90_days or 0 for s in stages], height=0.4,
                    color=WARN, label="90th percentile")
            ax.set_yticks(ys, [f"{s.label} (n={s.count})" for s in stages])
            ax.invert_yaxis()
            ax.set_xlabel("Days")
            ax.legend(loc="lower right", frameon=False)
        ax.set_title("Time from referral to consensus")
    text = "; ".join(f"{s.label}: median {s.median_days:.1f} days, 90th percentile {s.p90_days:.1f} days"
                     if s.count else f"{s.label}: no case" for s in m.stages)
    return _render(fig, "Time from referral to consensus", text)


def plot_compliance(m: Metrics) -> bytes:
    """Cases discussed by their deadline vs breaches."""
    c = m.compliance
    with matplotlib.rc_context(RC):
        fig = _figure(height=2.2)
        ax = fig.subplots()
        if not c.counted:
            _empty(ax)
        else:
            ax.barh([0], [c.compliant], color=OK, label=f"By the deadline ({c.compliant})")
            ax.barh([0], [c.breached], left=[c.compliant], color=BAD, label=f"Breached ({c.breached})")
            ax.set_yticks([])
            ax.set_xlabel("Cases")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncols=2, frameon=False)
        ax.set_title(f"Window compliance: {_pct(c.rate)}")
    return _render(fig, "Window compliance",
                   f"{c.compliant} of {c.counted} cases discussed by their deadline ({_pct(c.rate)}); "
                   f"{c.breached} breached.")


def plot_concordance(m: Metrics) -> bytes:
    """Share of each concordance value, and our discrepancy rates beside the published ranges."""
    k = m.concordance
    with matplotlib.rc_context(RC):
        fig = _figure(height=3.0)
        left, right = fig.subplots(1, 2, width_ratios=(3, 2))
        if not k.total:
            _empty(left)
            _empty(right)
        else:
            shares = [k.share(v) or 0 for v in CONCORDANCE]
            left.bar([label(v).replace(" discrepancy", "\ndiscrepancy") for v in CONCORDANCE], shares,
                     color=[OK, WARN, BAD, BAD])
            left.set_ylabel("Share of signed records")
            left.set_ylim(0, 1)
            left.set_title(f"Concordance with the first opinion (n={k.total})")
            rates = [k.discrepancy_rate or 0, k.major_rate or 0, k.management_change_rate or 0]
            names = ["Any\ndiscrepancy", "Major or\nnew diagnosis", "Management\nchanged"]
            right.bar(names, rates, color=ACCENT, width=0.6)
            # the published ranges, drawn over the bars as a dark line with end caps
            for x, (low, high) in ((0, PUBLISHED_DISCREPANCY), (1, PUBLISHED_MAJOR_PATHOLOGY)):
                right.errorbar([x + 0.38], [(low + high) / 2], yerr=[[(high - low) / 2], [(high - low) / 2]],
                               fmt="none", ecolor="#1d2330", elinewidth=2, capsize=4, zorder=3,
                               label="Published range" if x == 0 else None)
            right.tick_params(axis="x", labelsize=7.5)
            right.set_ylim(0, 1)
            right.set_title("Rates vs published ranges")
            right.legend(loc="upper right", frameon=False)
    text = (f"{k.total} signed records. " + ", ".join(f"{label(v)} {_pct(k.share(v))}" for v in CONCORDANCE)
            + f". Any discrepancy {_pct(k.discrepancy_rate)} (published 2–51% by specialty); major or new "
            f"diagnosis {_pct(k.major_rate)} (published major pathology disagreement 1.2–2.3%); "
            f"management changed {_pct(k.management_change_rate)}.")
    return _render(fig, "Concordance with the first opinion", text)


def plot_boards(m: Metrics) -> bytes:
    """Fill (minutes used / capacity) and quorum rate per board."""
    boards = m.boards
    with matplotlib.rc_context(RC):
        fig = _figure(height=max(2.4, 0.5 * len(boards) + 1.2))
        ax = fig.subplots()
        if not boards:
            _empty(ax)
        else:
            ys = list(range(len(boards)))
            ax.barh([y - 0.2 for y in ys], [b.fill or 0 for b in boards], height=0.4, color=ACCENT,
                    label="Fill")
            ax.barh([y + 0.2 for y in ys], [b.quorum_rate or 0 for b in boards], height=0.4, color=OK,
                    label="Quorum met")
            ax.set_yticks(ys, [f"{b.name} ({b.meetings})" for b in boards])
            ax.invert_yaxis()
            ax.set_xlim(0, max(1.0, *(b.fill or 0 for b in boards)))
            ax.set_xlabel("Share")
            ax.legend(loc="lower right", frameon=False)
        ax.set_title("Meeting fill and quorum per board")
    text = "; ".join(f"{b.name}: {b.meetings} meetings, fill {_pct(b.fill)}, quorum met {_pct(b.quorum_rate)}"
                     for b in boards) or "No meeting in this period."
    return _render(fig, "Meeting fill and quorum per board", text)


def plot_invites(m: Metrics) -> bytes:
    """Invitations by answer."""
    i = m.invites
    colours = {"ACCEPTED": OK, "TENTATIVE": WARN, "DECLINED": BAD, "DELEGATED": ACCENT, "NEEDS-ACTION": MUTED}
    with matplotlib.rc_context(RC):
        fig = _figure(height=2.6)
        ax = fig.subplots()
        if not i.total:
            _empty(ax)
        else:
            names = list(i.counts)
            ax.bar([label(n.lower()).replace("Needs-action", "No answer") for n in names],
                   [i.counts[n] for n in names], color=[colours[n] for n in names])
            ax.set_ylabel("Invitations")
        ax.set_title(f"Invite answers: {_pct(i.answered_rate)} answered")
    text = ", ".join(f"{label(p.lower())} {c}" for p, c in i.counts.items()) + \
        f". Answered {_pct(i.answered_rate)}, accepted {_pct(i.accepted_rate)}."
    return _render(fig, "Invite answers", text)


PLOTS: dict[str, tuple[str, Callable[[Metrics], bytes]]] = {
    "times": ("Time from referral to consensus", plot_times),
    "compliance": ("Window compliance", plot_compliance),
    "concordance": ("Concordance with the first opinion", plot_concordance),
    "boards": ("Meeting fill and quorum per board", plot_boards),
    "invites": ("Invite answers", plot_invites),
}
