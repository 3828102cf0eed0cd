"""The pieces every report page is made of: escaping and number formats, tables, the warnings box and marks,
budget lines, the equal-memory table, the configuration tables, and the page itself with the Vega, Vega-Lite
and vega-embed libraries inlined once (`vega_bundle`), so that it opens offline."""
from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Sequence

import altair as alt

from .. import __version__
from ..compare import (
    CACHE_NOTE,
    OVERLAP_POINTS,
    CurvePoint,
    equal_memory_rows,
    knew,
    make_curve,
    paired_verdict,
    policy_kind,
)
from ..plan import run_key
from ..replay import RESULTS_FORMAT
from .charts import MIB

EMBED_OPTIONS = {"renderer": "svg", "mode": "vega-lite",
                 "actions": {"export": True, "source": False, "compiled": False, "editor": False}}
#: Chart ids in page order: the browser test and tests/test_report.py count them.


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script, for the Vega-Lite version altair writes (no network)."""
    import vl_convert

    vl_version = "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    try:
        bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    except (RuntimeError, ValueError):  # an altair newer than this vl-convert knows: its latest Vega-Lite
        bundle = vl_convert.javascript_bundle()
    if "</script" in bundle.lower():  # would end our <script> element early
        bundle = bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return bundle


def _json_for_script(value) -> str:
    """JSON that can sit inside <script>: '<', '>' and '&' escaped as \\u sequences (valid JSON)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def mib_text(n) -> str:
    return f"{n / MIB:,.2f}"


def size_text(n) -> str:
    """Bytes in MiB (2 decimals), or in KiB below a tenth of a MiB, where MiB would read 0.00."""
    if n == 0:
        return "0 bytes"
    return f"{n / MIB:,.2f} MiB" if n >= MIB / 10 else f"{n / 1024:,.1f} KiB"


def pct(x) -> str:
    return f"{100 * x:.1f}%"


class Html(str):
    """Text that is HTML already: `html_table` does not escape it again."""


def _cell(value) -> str:
    return value if isinstance(value, Html) else esc(value)


def html_table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>' if "numbers" in cls.split() else table


def _share(x: float) -> str:
    """A share of a size: a percentage below 1, a multiple from 1 on."""
    return f"{100 * x:.3g}%" if x < 1 else f"{x:.3g}x"


# ---------------------------------------------------------------------------
# Warnings, budgets and kinds beside the numbers


def warnings_of(summary: dict) -> list[str]:
    return [str(w) for w in summary.get("warnings") or []]


def _concerns(warning: str, keys: Sequence[str]) -> list[str]:
    """The run keys a warning is about: those it names before its verb ("KEY ran ...", "A, B and C produced
    identical ..."), or anywhere for a warning of another form; a key counts as a whole token only."""
    head = warning
    for verb in (" ran ", " produced identical "):
        if verb in warning:
            head = warning.split(verb, 1)[0]
            break
    return [k for k in keys if re.search(rf"(?<![\w@.\-]){re.escape(k)}(?![\w@.\-])", head)]


class WarningMarks:
    """A page's warnings, numbered, and which runs each concerns (to mark them beside their numbers)."""

    def __init__(self, warnings: list[str], keys: Sequence[str], prefix: str = ""):
        self.warnings, self.prefix = warnings, prefix
        self.by_key: dict[str, list[int]] = {}
        for i, w in enumerate(warnings, 1):
            for key in _concerns(w, keys):
                self.by_key.setdefault(key, []).append(i)

    def box(self) -> str:
        """The list near the top of the page: every warning in full."""
        if not self.warnings:
            return ""
        n = len(self.warnings)
        items = "".join(f'<li id="{self.prefix}warning-{i}">{esc(w)}</li>' for i, w in enumerate(self.warnings, 1))
        return (f'<div class="warnings" role="alert"><b>&#9888; {n} warning{"s" if n > 1 else ""}: read '
                f'{"these" if n > 1 else "this"} before comparing the numbers below</b><ol>{items}</ol></div>')

    def marks(self, key: str) -> str:
        """Links to the warnings about `key`, to sit beside its numbers."""
        return "".join(f' <a class="wmark" href="#{self.prefix}warning-{i}" title="{esc(self.warnings[i - 1])}">'
                       f"&#9888;&nbsp;warning&nbsp;{i}</a>" for i in self.by_key.get(key, []))

    def about(self, keys: Sequence[str]) -> str:
        """The warnings about any of `keys`, in full (beside a budget's ranking)."""
        seen = sorted({i for k in keys for i in self.by_key.get(k, [])})
        return "".join(f'<p class="warn-here">&#9888; warning {i}: {esc(self.warnings[i - 1])}</p>' for i in seen)


def dense_sizes(summary: dict) -> tuple[int | None, int | None, int | None]:
    """(dense bytes, dense bytes of the rows touched, rows touched) from a replay trace or a train config."""
    where = summary.get("trace") if isinstance(summary.get("trace"), dict) else summary.get("config", {})
    touched = where.get("touched_rows")
    if isinstance(touched, list):
        touched = sum(touched)
    ints = [v if isinstance(v, int) and not isinstance(v, bool) else None
            for v in (where.get("dense_bytes"), where.get("touched_dense_bytes"), touched)]
    return ints[0], ints[1], ints[2]


def budget_shares(summary: dict) -> dict[str, dict]:
    """Budget label -> its config entry with `dense_share` and `touched_share` (worked out where missing)."""
    dense, touched_dense, _ = dense_sizes(summary)
    out = {}
    for entry in summary["config"].get("budgets", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int):
            continue
        entry = dict(entry)
        if entry.get("dense_share") is None and dense:
            entry["dense_share"] = entry["bytes"] / dense
        if entry.get("touched_share") is None and touched_dense:
            entry["touched_share"] = entry["bytes"] / touched_dense
        out[str(entry.get("label"))] = entry
    return out


def budget_line(summary: dict, label: str) -> str:
    """`Budget L: B bytes (M MiB) = x% of the dense size (D MiB) and y% of the dense size of the R rows
    touched (T MiB)`, as far as the summary knows them."""
    entry = budget_shares(summary).get(label)
    if entry is None:
        return f"<b>Budget {esc(label)}</b>" if label else "<b>One budget</b>"
    dense, touched_dense, touched_rows = dense_sizes(summary)
    text = f"<b>Budget {esc(label)}</b>: {entry['bytes']:,} bytes ({size_text(entry['bytes'])})"
    shares = []
    if entry.get("dense_share") is not None:
        shares.append(f"{_share(entry['dense_share'])} of the dense size"
                      + (f" ({size_text(dense)})" if dense else ""))
    if entry.get("touched_share") is not None:
        rows = f" {touched_rows:,}" if touched_rows is not None else ""
        shares.append(f"{_share(entry['touched_share'])} of the dense size of the{rows} rows touched"
                      + (f" ({size_text(touched_dense)})" if touched_dense else ""))
        if entry["touched_share"] >= 1:
            shares[-1] += ": it holds every touched row, so policies can hardly differ"
    return text + (" = " + " and ".join(shares) if shares else "")


def over_budget(stats: dict, budget_bytes: int | None, covers_all: bool) -> bool:
    """Whether the budgeted bytes (payload, or everything with --budget-covers all) peaked above the budget."""
    used = stats["total_bytes_peak"] if covers_all else stats["payload_bytes_peak"]
    return budget_bytes is not None and used > budget_bytes


def run_tags(name: str, stats: dict, over: bool, short: bool = False, cache: bool = True) -> str:
    """What to know beside a policy's figures: over the budget, stores nothing, what it knew when sized before
    training, collisions, a cache (unless `cache` is False: said once for the line), the dense reference
    (`short`: for a table)."""
    tags = []
    if over:
        tags.append('<span class="tag over">over the budget</span>')
    if stats.get("total_bytes_peak") == 0:
        tags.append('<span class="tag ref">stores nothing</span>')
    kind = policy_kind(name)
    if kind in ("sized", "online"):
        tags.append(f'<span class="tag {kind}">{esc(knew(name, stats))}</span>')
    if kind == "cache" and cache:
        tags.append(f'<span class="tag cache">{"cache: full backing copy" if short else esc(CACHE_NOTE)}</span>')
    if kind == "reference" and short:
        tags.append('<span class="tag ref">dense reference</span>')
    if stats.get("collision_share") or name == "hash":
        share = pct(stats.get("collision_share") or 0.0)
        tags.append(f'<span class="tag collide">collisions {share}</span>' if short else
                    f'<span class="tag collide">collisions: {share} of lookups (counted as misses)</span>')
    return (" " + " ".join(tags)) if tags else ""


# ---------------------------------------------------------------------------
# The replay report's tables


def equal_memory_table(raw: dict[str, list[CurvePoint]], value: str, gap: str, seeds: bool = False) -> str:
    """The equal-memory table: per memory point each policy's interpolated value, the best that is not a cache,
    and every other's gap to it (with `seeds`, tie or not by `paired_verdict`), then how the points were picked.

    `value` and `gap` are format specs of a value and of a difference.
    """
    curves = {name: make_curve(points) for name, points in raw.items()}
    rows, common = equal_memory_rows(curves)
    spanning = [n for n, c in curves.items() if len(c) >= 2]
    columns = [n for n in spanning if any(row.values[n] is not None for row in rows)]
    header = ["total memory (peak)", "best (caches excluded)"]
    suffix = {"cache": " (cache: needs a full backing copy)", "sized": " (sized before training)"}
    header += [name + suffix.get(policy_kind(name), "") for name in columns]
    body = []
    for row in rows:
        best = row.values.get(row.best) if row.best else None
        ties = []
        cells = []
        for name in columns:
            point = row.values[name]
            if point is None:
                cells.append("")
                continue
            if name == row.best:
                cells.append(Html(f"<b>{point.value:{value}}</b> best"))
                continue
            text = f"{point.value:{value}}"
            if best is not None:
                text += f" ({point.value - best.value:+{gap}}"
                if seeds and policy_kind(name) != "cache":
                    verdict = paired_verdict(best.seeds, point.seeds)
                    if verdict.outcome == "tie":
                        ties.append(name)
                        text += ", <b>tie</b>"
                    elif verdict.outcome == "better":
                        text += f", below on {verdict.agree}/{verdict.seeds} seeds"
                text += ")"
            cells.append(Html(text))
        best_cell = "" if row.best is None else esc(row.best)
        if ties:
            best_cell += " &mdash; tied with " + ", ".join(esc(t) for t in ties)
        body.append([size_text(row.memory), Html(best_cell), *cells])
    notes = []
    if not spanning:
        notes.append("No policy was measured at two memories (one budget?), so there is no curve to interpolate: "
                     "compare the policies per budget above.")
    elif common:
        notes.append(f"Compared at {len(rows)} total memor{'y' if len(rows) == 1 else 'ies'} spaced evenly on a log "
                     "scale across the range every policy below was measured over (from the largest of their "
                     "smallest memories to the smallest of their largest).")
    elif rows:
        notes.append("No memory lies within every policy's measured range, so the points are spaced evenly on a log "
                     "scale across each stretch of memory that two or more policies were measured over "
                     f"({OVERLAP_POINTS} per stretch); a blank means the policy was not measured around that "
                     "memory. Add budgets to make the ranges overlap.")
    else:
        notes.append("No two policies were measured over overlapping memory ranges, so none can be compared at equal "
                     "memory: add budgets to make the ranges overlap.")
    outside = [n for n in spanning if n not in columns]
    if rows and outside:
        notes.append(f"Not measured around these memories: {', '.join(outside)}.")
    singles = [f"{n} ({'; '.join(f'{p.budget}: {p.value:{value}} in {size_text(p.memory)}' for p in c)})"
               for n, c in curves.items() if len(c) == 1]
    if singles:
        notes.append("Measured at one memory only, so not interpolated: " + ", ".join(singles) + ".")
    empty = [run_key(n, p.budget) if p.budget else n for n, pts in raw.items() for p in pts if p.memory <= 0]
    if empty:
        notes.append("Stored nothing (0 bytes), so not on a log scale: " + ", ".join(empty) + ".")
    note = ('<p class="note">' + " ".join(esc(n) for n in notes) + " Each policy's curve is linear in log(memory) "
            "between its measured points (total memory, peak), never extrapolated; where several budgets gave the "
            "same memory, the better value counts. Caches are shown but never best: their misses are served from a "
            "full copy elsewhere.</p>")
    return (html_table(header, body, "numbers equal") if body else "") + note


def plain_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def budgets_text(summary: dict) -> str:
    return "; ".join(
        f"{label} = {b['bytes']:,} bytes"
        + (f", {_share(b['dense_share'])} of dense" if b.get("dense_share") is not None else "")
        + (f", {_share(b['touched_share'])} of touched" if b.get("touched_share") is not None else "")
        for label, b in budget_shares(summary).items())


def config_tables(summary: dict) -> str:
    config = dict(summary["config"])
    config.pop("budgets", [])
    policies = config.pop("policies", [])
    knobs = [[k, plain_value(v)] for k, v in config.items()]
    knobs.append(["policies", ", ".join(map(str, policies))])
    knobs.append(["budgets", budgets_text(summary)])
    trace = dict(summary["trace"])
    tables = trace.pop("tables", []) or []
    stats = [[k, plain_value(v)] for k, v in trace.items()]
    for key, what in (("dense_bytes", "dense size"), ("touched_dense_bytes", "dense size of the rows touched")):
        if isinstance(trace.get(key), int):
            stats.append([what, f"{mib_text(trace[key])} MiB"])
    touched = trace.get("touched_rows_per_table")
    table_rows = [[t.get("name"), f"{t.get('rows', 0):,}",
                   f"{touched[i]:,}" if isinstance(touched, list) and i < len(touched) else "",
                   t.get("dim"), t.get("chunk"), t.get("dtype_bytes")]
                  for i, t in enumerate(tables) if isinstance(t, dict)]
    return ("<h2 id=\"config\">Configuration</h2>" + html_table(["setting", "value"], knobs, "kv")
            + "<h2 id=\"trace\">Trace</h2>" + html_table(["statistic", "value"], stats, "kv")
            + html_table(["table", "rows", "rows touched", "dimension D", "chunk C", "bytes per value"], table_rows,
                     "numbers"))


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
 padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px}th{background:#f4f4f4}
table.numbers td{text-align:right}table.numbers td:first-child,table.numbers td:nth-child(2){text-align:left}
table.numbers td:last-child{text-align:left}
.chart{margin:8px 0 24px;overflow-x:auto}.note{color:#555;font-size:13px;max-width:1000px}
nav a{margin-right:12px}
.warnings{background:#fff4d6;border:2px solid #e0a800;border-radius:4px;padding:8px 14px;margin:12px 0;
 max-width:1100px}.warnings ol{margin:6px 0 2px}
.warn-here{background:#fff4d6;border-left:4px solid #e0a800;padding:3px 8px;margin:4px 0;font-size:13px}
.wmark{color:#8a5a00;font-size:12px;text-decoration:none;white-space:nowrap}
.how{background:#f3f6fa;border:1px solid #c9d6e6;border-radius:4px;padding:6px 14px;font-size:13px;max-width:1100px}
.how li{margin:3px 0}
.budget{border-left:3px solid #9ab;padding:2px 10px;margin:10px 0}.budget p{margin:4px 0}
.rank .what{color:#555}.rank.cache{color:#444}
.tag{font-size:11px;border-radius:3px;padding:0 4px;white-space:nowrap}
.tag.over{background:#fde2e1;color:#8c1c13}.tag.sized{background:#e6e0f5;color:#46307a}
.tag.online{background:#e3f1e4;color:#1f5b29}
.tag.cache{background:#e2ecf7;color:#1d4f80}.tag.collide{background:#f2ead9;color:#6b4e16}
.tag.ref{background:#eee;color:#444}.verdict{font-weight:600}
.scroll{overflow-x:auto}table.numbers td{white-space:nowrap}
"""

PAGE_SCRIPT = """
(function () {
  var specs = JSON.parse(document.getElementById("fiitedsim-specs").textContent);
  var options = JSON.parse(document.getElementById("fiitedsim-embed-options").textContent);
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById("chart-" + id);
    vegaEmbed(el, specs[id], options).then(function () { el.setAttribute("data-rendered", "1"); })
      .catch(function (err) { el.textContent = "chart failed to render: " + err; console.error(err); });
  });
})();
"""


def render_page(title: str, body: list[str], specs: dict[str, dict],
          made_from: str = f"results format {RESULTS_FORMAT}") -> str:
    """The page shell: head with the inlined libraries once, `body`, then the chart specs and the embed script."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{STYLE}</style>",
        (f"<script>/* Vega, Vega-Lite {alt.SCHEMA_VERSION} and vega-embed, bundled by vl-convert */\n"
         f"{vega_bundle()}\n</script>"),
        "</head>", "<body>", f"<h1>{esc(title)}</h1>",
        *body,
        (f'<p class="note">Made by fiitedsim {esc(__version__)} from {esc(made_from)}. '
         "Opens offline: the chart libraries and data are inside this file.</p>"),
        f'<script type="application/json" id="fiitedsim-specs">{_json_for_script(specs)}</script>',
        f'<script type="application/json" id="fiitedsim-embed-options">{_json_for_script(EMBED_OPTIONS)}</script>',
        f"<script>{PAGE_SCRIPT}</script>",
        "</body>", "</html>", "",
    ])


def how_to_read(items: list[str]) -> str:
    return '<div class="how"><b>How to read this</b><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


#: The replay report's "how to read this" note (HTML).
