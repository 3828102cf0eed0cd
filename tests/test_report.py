"""The HTML report without a browser: its structure, its numbers, its size, its bytes, and the CLI around it.

test_report_browser.py opens the same page in Chromium; here we check what can
be read from the file: one spec per chart, the chart libraries exactly once,
nothing fetched from the network, under 5 MB, deterministic, and the numbers
behind the charts against values worked out by hand from tiny made-up results.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import polars as pl
import pytest
from report_fixtures import POLICY_NAMES, sample_results
from test_cli import FAST, fails_cleanly, run, snapshot

from fiitedsim import report as rp
from fiitedsim.replay import RESULTS_FORMAT, ReplayResults, write_results

MB = 1_000_000


def specs_of(page: str) -> dict:
    found = re.findall(r'<script type="application/json" id="fiitedsim-specs">(.*?)</script>', page, re.DOTALL)
    assert len(found) == 1
    return json.loads(found[0])


def datasets(spec: dict) -> list[dict]:
    """Every inline data row of a spec (altair moves them to top-level `datasets`, or leaves `data.values`)."""
    rows = [row for values in spec.get("datasets", {}).values() for row in values]
    return rows + list(spec.get("data", {}).get("values", []))


def urls_in(value) -> list:
    """Every `url` key anywhere in a spec: data or images Vega would fetch when the page is viewed."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "url"] + [u for v in value.values() for u in urls_in(v)]
    if isinstance(value, list):
        return [u for v in value for u in urls_in(v)]
    return []


# ---------------------------------------------------------------------------
# The page from a real replay of the shipped sample


@pytest.fixture(scope="module")
def page() -> str:
    return rp.render_report(sample_results())


def test_one_spec_per_chart_each_with_a_box(page):
    specs = specs_of(page)
    assert list(specs) == sorted(rp.CHART_IDS)  # sort_keys in the JSON
    assert re.findall(r'<div class="chart" id="chart-(\w+)"', page) == list(rp.CHART_IDS)
    for chart_id, spec in specs.items():
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/"), chart_id
        assert datasets(spec), f"{chart_id} has no inline data"


def test_libraries_inlined_exactly_once_and_nothing_loaded_from_the_network(page):
    bundle = rp.vega_bundle()
    assert len(bundle) > 100_000 and page.count(bundle) == 1
    for name in ("window.vegaEmbed=", "window.vega=", "window.vegaLite="):  # the bundle's exports
        assert page.count(name) == 1, name
    assert len(re.findall(r"<script\b", page)) == 4  # libraries, specs, embed options, the loop that embeds
    # no element of ours that loads a resource when the page opens (the bundle's own code is Vega's: its
    # strings such as an `<img src=` for the PNG export run only on a click, and the browser test runs offline)
    ours = page.replace(bundle, "")
    assert not re.findall(r"<(?:script|link|img|iframe|embed|object|source)\b[^>]*\b(?:src|href|data)\s*=", ours,
                          re.IGNORECASE)
    assert not re.findall(r"@import|url\(|https?://", ours.split('<script type="application/json"')[0])
    assert urls_in(specs_of(page)) == []


def test_size_under_5_mb(page):
    assert len(page.encode()) < 5 * MB


@pytest.mark.slow  # seconds of replay or compute
def test_same_results_same_bytes_whichever_way(tmp_path, page):
    """Rendered again, or re-read from a results folder (`fiitedsim report`), the page is byte-identical."""
    assert rp.render_report(sample_results()) == page
    write_results(tmp_path / "run", sample_results())
    assert rp.render_report(rp.load_results(tmp_path / "run")) == page


def test_every_run_in_the_summary_table(page):
    table = page.split('<h2 id="summary">', 1)[1].split("</table>", 1)[0]
    for name in POLICY_NAMES:
        for budget in ("0.05", "0.25"):
            assert f"<tr><td>{name}</td><td>{budget}</td>" in table


# ---------------------------------------------------------------------------
# Numbers behind the charts, from made-up results worked out by hand


def made_up(keys=("alpha", "beta"), budgets=(("0.1", 1000),), windows=4, k=2, stats=None,
            warnings=()) -> ReplayResults:
    """Tiny hand-made results. Every key gets the same series:

    step              9     19    29    39
    lookups (cum.)   10     30    30    60      -> lookups per window 10, 20, 0, 30
    row_hits (cum.)   5      5     5    35      -> row hits per window  5,  0, 0, 30
    so the per-window row hit rates are 50%, 0%, (no lookups: no point), 100%;
    chunk counters are twice the row ones (K = 2) and dim counters four times (D = 4): the same rates.
    payload_bytes = 1 MiB, index_bytes = 0.5 MiB, meta_bytes = 0.25 MiB at every step.
    `stats` maps a key to summary figures that replace the defaults (a dim hit rate of 50% in 2 MiB).
    """
    base = {"lookups": [10, 30, 30, 60], "row_hits": [5, 5, 5, 35]}
    rows = {"step": [9 + 10 * i for i in range(windows)]}
    for name, values in base.items():
        rows[name] = (values * (windows // 4 + 1))[:windows] if windows <= 4 else list(range(windows))
    rows["chunk_hits"] = [2 * v for v in rows["row_hits"]]
    rows["chunks_requested"] = [2 * v for v in rows["lookups"]]
    rows["full_hits"] = rows["row_hits"]
    rows["dim_hits"] = [4 * v for v in rows["row_hits"]]
    rows["dims_requested"] = [4 * v for v in rows["lookups"]]
    rows["collisions"] = [0] * windows
    for column, value in (("payload_bytes", 2**20), ("index_bytes", 2**19), ("meta_bytes", 2**18),
                          ("total_bytes", 2**20 + 2**19 + 2**18), ("mapped_pages", 3)):
        rows[column] = [value] * windows
    rows["fragmentation"] = [0.25] * windows
    rows["theta"] = [float("inf")] * windows  # +infinity in a series must not break the page
    for d in range(k + 1):
        rows[f"dim_{d}"] = [d + 1] * windows
    frame = pl.DataFrame(rows)
    default = {key: 0 for key in rp.NEEDED_SUMMARY_KEYS}
    default.update(row_hit_rate=0.5, chunk_hit_rate=0.5, full_hit_rate=0.5, dim_hit_rate=0.5,
                   collision_share=0.0, total_bytes_final=2**21, total_bytes_peak=2**21, payload_bytes_peak=2**20,
                   dim_hist_final=list(range(1, k + 2)), mean_probe_length=0.0, fragmentation_final=0.25)
    keyed = len(budgets) > 1
    policies = {(f"{name}@{label}" if keyed else name): dict(default) for label, _ in budgets for name in keys}
    for key, figures in (stats or {}).items():
        policies[key].update(figures)
    summary = {"format": RESULTS_FORMAT, "policies": policies, "warnings": list(warnings),
               "config": {"budgets": [{"label": label, "bytes": b} for label, b in budgets], "policies": list(keys),
                          "budget_covers": "payload"},
               "trace": {"path": "made/up.parquet", "lookups": 60, "first_step": 0, "last_step": 39,
                         "dense_bytes": 4 * 2**20, "touched_rows": 3, "touched_rows_per_table": [3],
                         "touched_dense_bytes": 48, "tables": [{"name": "t", "rows": 3, "dim": 4, "chunk": 2,
                                                               "dtype_bytes": 4}]}}
    return ReplayResults(summary, {key: frame for key in policies})


def test_window_hit_rates_come_from_counter_differences():
    spec = rp.chart_specs(made_up())["hit_rates"]
    got = sorted((r["what"], r["step"], r["rate"]) for r in datasets(spec) if r["policy"] == "alpha")
    want = sorted((what, step, rate) for what in ("dim hit rate", "row hit rate", "chunk hit rate", "full hit rate")
                  for step, rate in ((9, 50.0), (19, 0.0), (39, 100.0)))  # step 29 had no lookups
    assert got == want


def test_memory_parts_in_mib():
    rows = datasets(rp.chart_specs(made_up())["memory"])
    got = {(r["what"], r["mib"]) for r in rows if r["policy"] == "beta" and r["step"] == 19}
    assert got == {("payload", 1.0), ("index", 0.5), ("metadata", 0.25)}


def test_any_policy_name_from_the_summary_reaches_every_chart():
    results = made_up(keys=("lru", "some-new-policy"), budgets=(("0.05", 500), ("0.1", 1000)))
    page = rp.render_report(results)
    for chart_id, spec in specs_of(page).items():
        seen = {r["policy"] for r in datasets(spec)}
        assert seen == {"lru", "some-new-policy"}, chart_id
        assert {r["budget"] for r in datasets(spec)} == {"0.05", "0.1"}, chart_id
    assert "<tr><td>some-new-policy</td><td>0.1</td>" in page


@pytest.mark.slow  # seconds of replay or compute
def test_long_runs_are_thinned_to_keep_the_page_small():
    results = made_up(keys=tuple(f"p{i}" for i in range(6)), budgets=(("a", 1), ("b", 2), ("c", 3)),
                      windows=20_000, k=16)
    page = rp.render_report(results)
    assert len(page.encode()) < 5 * MB
    steps = sorted({r["step"] for r in datasets(specs_of(page)["fragmentation"]) if r["policy"] == "p0"
                    and r["budget"] == "a"})
    assert len(steps) == rp.MAX_WINDOWS and steps[0] == 9 and steps[-1] == 9 + 10 * 19_999  # first and last kept


# ---------------------------------------------------------------------------
# Loading a results folder: every bad one is an InputError naming the fix


def test_load_rejects_what_is_not_a_current_results_folder(tmp_path):
    with pytest.raises(rp.InputError, match="does not exist"):
        rp.load_results(tmp_path / "nope")
    with pytest.raises(rp.InputError, match="no summary.json"):
        rp.load_results(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(rp.InputError, match="not valid JSON"):
        rp.load_results(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"format": RESULTS_FORMAT + 1, "policies": {}}))
    with pytest.raises(rp.InputError, match="newer fiitedsim"):
        rp.load_results(tmp_path)


# ---------------------------------------------------------------------------
# The CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results") / "run"
    write_results(folder, sample_results())
    return folder


def older(folder: Path) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    summary["format"] = RESULTS_FORMAT - 1
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize("case, words", [
    ("missing", ["does not exist", "--out"]),
    ("no summary", ["no summary.json", "--out"]),
    ("bad json", ["not valid JSON", "re-run"]),
    ("older format", ["older fiitedsim", f"format {RESULTS_FORMAT - 1}", "re-run", "--out"]),
    ("missing series", ["timeseries/", "missing"]),
])
def test_report_command_fails_cleanly(monkeypatch, capsys, tmp_path, case, words):
    folder = tmp_path / "run"
    if case != "missing":
        folder.mkdir()
    if case in ("older format", "missing series"):
        write_results(folder, sample_results())
    if case == "bad json":
        (folder / "summary.json").write_text('{"format": 1, "policies": ')
    if case == "older format":
        older(folder)
    if case == "missing series":
        next((folder / "timeseries").iterdir()).unlink()
    for args in ([folder], [folder, "-o", tmp_path / "out.html"]):
        fails_cleanly(monkeypatch, capsys, tmp_path, ["report", *args], *words)


SERIES_DAMAGE = [  # (column, value, words): issue 21, class I; the first two rendered with exit 0
    ("fragmentation", float("nan"), ["fragmentation", "NaN", "not a share in 0..1"]),
    ("fragmentation", 7.5, ["fragmentation", "7.5", "not a share in 0..1"]),
    ("index_load_factor", -0.5, ["index_load_factor", "-0.5", "not a share in 0..1"]),
    ("theta", float("nan"), ["theta", "NaN", "not a number >= 0"]),
    ("theta", -1.0, ["theta", "-1", "not a number >= 0"]),
    ("lookups", -3, ["lookups", "-3", "not an integer >= 0"]),
    ("dim_0", -1, ["dim_0", "-1", "not an integer >= 0"]),
    ("payload_bytes", 2.5, ["payload_bytes", "Float64", "not Int64"]),
]


@pytest.mark.parametrize("column, value, words", SERIES_DAMAGE, ids=[f"{c}={v}" for c, v, _ in SERIES_DAMAGE])
def test_a_time_series_out_of_its_ranges_is_refused(monkeypatch, capsys, tmp_path, run_dir, column, value, words):
    """docs/usage.md: a time-series value that breaks its contract is refused with one line saying what to re-run."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    target = sorted((folder / "timeseries").iterdir())[-1]
    frame = pl.read_parquet(target)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == frame.height - 1).then(pl.lit(value))
                               .otherwise(pl.col(column)).alias(column))
    frame.write_parquet(target)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"],
                  *words, target.stem, "re-run")


def test_an_infinite_theta_in_a_time_series_is_fine(monkeypatch, capsys, tmp_path, run_dir):
    """theta +inf means that the budget holds no chunk (summary.json writes it as null)."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    target = sorted((folder / "timeseries").iterdir())[0]
    pl.read_parquet(target).with_columns(pl.lit(float("inf")).alias("theta")).write_parquet(target)
    assert run(monkeypatch, capsys, "report", folder, "-o", tmp_path / "r.html").code == 0


def test_report_command_into_a_missing_folder_fails_cleanly(monkeypatch, capsys, tmp_path, run_dir):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", run_dir, "-o", tmp_path / "no" / "r.html"],
                  "no", "does not exist")


def test_report_command_writes_the_page(monkeypatch, capsys, tmp_path, run_dir, page):
    result = run(monkeypatch, capsys, "report", run_dir, "-o", tmp_path / "r.html")
    assert result.code == 0 and result.err == f"report of a replay folder in {tmp_path / 'r.html'}\n", result
    assert (tmp_path / "r.html").read_text() == page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left behind


def test_report_command_default_output_in_the_folder(monkeypatch, capsys, tmp_path, run_dir):
    folder = tmp_path / "copy"
    write_results(folder, sample_results())
    assert run(monkeypatch, capsys, "report", folder).code == 0
    assert (folder / "report.html").is_file()


def test_replay_report_into_a_missing_folder_fails_before_replaying(monkeypatch, capsys, tmp_path):
    import fiitedsim.replay

    def no_replay(*args, **kwargs):
        raise AssertionError("replayed before checking --report")
    monkeypatch.setattr(fiitedsim.replay, "replay_runs", no_replay)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--report", tmp_path / "no" / "r.html", "-q"],
                  "does not exist")
    (tmp_path / "dir.html").mkdir()
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--report", tmp_path / "dir.html", "-q"], "is a folder")


@pytest.mark.slow  # seconds of replay or compute
def test_replay_report_with_and_without_out(monkeypatch, capsys, tmp_path):
    """--report alone writes only the page; with --out it may go inside the folder --out creates."""
    args = ["replay", "--policy", "full,uniform-row", "--budget", "0.1,0.2", *FAST]
    result = run(monkeypatch, capsys, *args, "--report", tmp_path / "alone.html")
    assert result.code == 0, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.html"]
    result = run(monkeypatch, capsys, *args, "--out", tmp_path / "run", "--report", tmp_path / "run" / "r.html")
    assert result.code == 0, result
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["r.html", "summary.json", "timeseries"]
    # the page written after the replay equals the one re-rendered from the saved folder
    assert (tmp_path / "run" / "r.html").read_text() == rp.render_report(rp.load_results(tmp_path / "run"))
    assert (tmp_path / "alone.html").read_text() == (tmp_path / "run" / "r.html").read_text()
    before = snapshot(tmp_path)
    assert before  # used by the next line: a second identical run changes no byte
    assert run(monkeypatch, capsys, *args, "--out", tmp_path / "run", "--report", tmp_path / "run" / "r.html").code == 0
    assert snapshot(tmp_path) == before


def test_help_teaches_the_report_options(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    r = run(monkeypatch, capsys, "replay", "--help")
    assert r.code == 0 and "--report" in r.out and "self-contained HTML" in r.out
    r = run(monkeypatch, capsys, "report", "--help")
    assert r.code == 0, r.err
    for words in ("--output", "RUN_DIR/report.html", "replay", "--out", "offline"):
        assert words in r.out, words
    r = run(monkeypatch, capsys, "--help")
    assert "report" in r.out




# ---------------------------------------------------------------------------
# Fair comparisons on the replay page: total memory on log axes, equal memory, caches apart, warnings


def section(page: str, anchor: str) -> str:
    """The page from the heading with id `anchor` to the next heading of the same level."""
    after = page.split(f'id="{anchor}">', 1)[1]
    return re.split(r"<h[23] id=", after, maxsplit=1)[0]


def panels(spec: dict) -> list[dict]:
    """The x encoding of every layer of each panel of a two-panel (total | payload) chart."""
    return [[layer["encoding"]["x"] for layer in panel["layer"]] for panel in spec["hconcat"]]


MiB = 2**20
#: alpha (1 MiB, 50%) (4 MiB, 90%); beta (2 MiB, 60%) (8 MiB, 80%); lru (1 MiB, 70%) (4 MiB, 95%): see
#: test_report_compare.test_equal_memory_rows_worked_by_hand for the values at 2 and 4 MiB.
CURVES = {"alpha@a": (1, 0.5), "alpha@b": (4, 0.9), "beta@a": (2, 0.6), "beta@b": (8, 0.8),
          "lru@a": (1, 0.7), "lru@b": (4, 0.95)}


def curves_results() -> ReplayResults:
    stats = {key: {"total_bytes_peak": m * MiB, "payload_bytes_peak": m * MiB // 2, "dim_hit_rate": rate}
             for key, (m, rate) in CURVES.items()}
    return made_up(keys=("alpha", "beta", "lru"), budgets=(("a", 1000), ("b", 4000)), stats=stats)


def test_tradeoff_is_dim_hit_rate_against_total_memory_on_log_axes_with_payload_beside():
    spec = rp.chart_specs(curves_results())["tradeoff"]
    total, payload = panels(spec)
    assert {x["field"] for x in total} == {"total_mib"} and {x["field"] for x in payload} == {"payload_mib"}
    assert all(x["scale"]["type"] == "log" for x in total + payload)
    rows = {(r["policy"], r["budget"]): r for r in datasets(spec)}
    assert (rows[("beta", "b")]["total_mib"], rows[("beta", "b")]["payload_mib"], rows[("beta", "b")]["rate"]) == \
        (8.0, 4.0, 80.0)
    assert spec["hconcat"][0]["layer"][0]["encoding"]["y"]["field"] == "rate"
    # the real page: every run's total peak memory, in MiB
    spec = specs_of(rp.render_report(sample_results()))["tradeoff"]
    stats = sample_results().summary["policies"]
    assert sorted(r["total_mib"] for r in datasets(spec)) == sorted(
        round(s["total_bytes_peak"] / MiB, 6) for s in stats.values())


def test_equal_memory_table_interpolates_on_log_memory_and_never_ranks_a_cache():
    table = section(rp.render_report(curves_results()), "equal-memory")
    header = re.findall(r"<th>(.*?)</th>", table)
    assert header == ["total memory (peak)", "best (caches excluded)", "alpha", "beta",
                      "lru (cache: needs a full backing copy)"]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", table)
    assert len(rows) == 5  # five log-spaced points across [2, 4] MiB, the range both curves and lru cover
    assert rows[0].split("</td><td>") == ["2.00 MiB", "alpha", "<b>70.0</b> best", "60.0 (-10.0)", "82.5 (+12.5)"]
    assert rows[4].split("</td><td>") == ["4.00 MiB", "alpha", "<b>90.0</b> best", "70.0 (-20.0)", "95.0 (+5.0)"]
    assert "Compared at 5 total memories spaced evenly on a log scale" in table and "never extrapolated" in table


def ranked_results() -> ReplayResults:
    stats = {"lru": {"dim_hit_rate": 0.9}, "fiited": {"dim_hit_rate": 0.6}, "mde": {"dim_hit_rate": 0.8},
             "hash": {"dim_hit_rate": 0.3, "collision_share": 0.25},
             "full": {"dim_hit_rate": 1.0, "payload_bytes_peak": 4 * MiB, "total_bytes_peak": 4 * MiB}}
    return made_up(keys=("fiited", "lru", "mde", "hash", "full"), budgets=(("0.1", 2 * MiB),), stats=stats)


def test_ranking_by_dim_hit_rate_with_caches_apart_and_marks():
    ranking = section(rp.render_report(ranked_results()), "ranking")
    pruning, reference, caches = (re.search(rf'<p class="rank{cls}">(.*?)</p>', ranking).group(1)
                                  for cls in ("", " ref", " cache"))
    # pruning by dim hit rate, the cache and the dense reference not among them
    assert re.findall(r"\d\. <b>([\w-]+)</b>", pruning) == ["mde", "fiited", "hash"]
    assert "lru" not in pruning and "full" not in pruning
    # each with what it knew: a replay's mde reads the whole trace first; fiited learns online; hash is sized
    # from the table sizes
    assert "<b>mde</b> 80.0% in 2.00 MiB" in pruning and "sized from the whole trace (a first pass)" in pruning
    assert "online, from the lookups so far" in pruning and "sized from the table sizes" in pruning
    assert "<b>hash</b> 30.0% in 2.00 MiB" in pruning and "collisions: 25.0% of lookups" in pruning
    assert "<b>full</b> 100.0% in 4.00 MiB" in reference and "over the budget" in reference
    assert "1. <b>lru</b> 90.0%" in caches and "needs a full backing copy: a miss is served from it, not lost" in caches


def test_summary_table_has_dim_hit_rate_and_collisions():
    table = section(rp.render_report(ranked_results()), "summary")
    header = re.findall(r"<th>(.*?)</th>", table)
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", table) if r.startswith("<td>hash</td>"))
    cells = dict(zip(header, re.findall(r"<td>(.*?)</td>", row)))
    assert cells["dim hit"] == "30.0%" and cells["collisions"] == "25.0%" and "collisions 25.0%" in cells["notes"]


FEW_ROUNDS = ("alpha@0.1 ran 1 pruning round (interval 100 over steps 0..39): its figures are first-come "
              "admission, not pruning; lower --interval so that rounds run")
IDENTICAL = "alpha and beta produced identical hit counts and memory at budget 0.2: check the budget"


def test_warnings_first_on_the_page_and_beside_the_numbers_they_concern():
    results = made_up(budgets=(("0.1", 1000), ("0.2", 2000)),
                      warnings=(FEW_ROUNDS, IDENTICAL.replace("alpha and beta", "alpha@0.2 and beta@0.2")))
    page = rp.render_report(results)
    box = page.index('class="warnings"')
    assert box < page.index("<nav>") < page.index('id="ranking"')
    assert re.findall(r'<li id="warning-(\d)">', page) == ["1", "2"] and html.escape(FEW_ROUNDS) in page
    ranking = section(page, "ranking")
    first, second = ranking.split('<div class="budget">')[1:]
    assert "warning 1:" in first and "warning 2" not in first  # each budget shows the warnings about its runs
    assert "warning 2:" in second and "warning 1" not in second
    assert first.count('href="#warning-1"') == 1  # beside alpha@0.1's figures only
    table = section(page, "summary")
    alpha = next(r for r in re.findall(r"<tr>(.*?)</tr>", table) if r.startswith("<td>alpha</td><td>0.1</td>"))
    assert 'href="#warning-1"' in alpha
    assert 'class="warnings"' not in rp.render_report(made_up())  # none: no box


def test_budget_lines_give_bytes_and_shares_of_the_dense_and_touched_sizes(page):
    ranking = section(page, "ranking")
    # the sample: dense 10,240,000 bytes; 6,245 rows touched, 1,598,720 bytes dense; 0.05 = 512,000 bytes
    assert ("<b>Budget 0.05</b>: 512,000 bytes (0.49 MiB) = 5% of the dense size (9.77 MiB) and 32% of the dense "
            "size of the 6,245 rows touched (1.52 MiB)") in ranking
    assert "6,245 rows touched, 1.52 MiB dense" in page.split("<nav>")[0]


def test_sweep_page_has_every_section_per_group_with_unique_ids():
    groups = [("chunk 4", made_up(warnings=(IDENTICAL.replace("0.2", "0.1"),))), ("chunk 8", curves_results())]
    page = rp.render_sweep_report(groups)
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for i in (0, 1):
        for part in ("ranking", "equal-memory", "summary", "sec-tradeoff"):
            assert f'id="g{i}-{part}"' in page
    assert 'id="g0-warning-1"' in page and 'href="#g0-warning-1"' in page
    assert sorted(specs_of(page)) == sorted(f"g{i}-{c}" for i in (0, 1) for c in rp.SWEEP_CHARTS)
    assert rp.render_sweep_report(groups) == page


# ---------------------------------------------------------------------------
# The training report: worked out by hand from report_fixtures.TRAIN_RUNS


def train_page(**kwargs) -> str:
    from report_fixtures import train_outputs

    outputs = train_outputs(**kwargs)
    return rp.render_train_report(outputs.summary, outputs.curve)


def test_training_report_is_deterministic_offline_and_draws_total_memory_on_log_axes(tmp_path):
    from report_fixtures import train_outputs

    outputs = train_outputs()
    page = rp.write_train_report(tmp_path / "train.html", outputs).read_text()
    assert page.count(rp.vega_bundle()) == 1 and "<script src" not in page
    assert rp.render_train_report(outputs.summary, outputs.curve) == page  # byte for byte
    specs = specs_of(page)
    assert urls_in(specs) == [] and sorted(specs) == sorted(rp.TRAIN_CHART_IDS)
    total, payload = panels(specs["accuracy_memory"])
    assert {x["field"] for x in total} == {"total_mib"} and {x["field"] for x in payload} == {"payload_mib"}
    assert all(x["scale"]["type"] == "log" for x in total + payload)
    points = {(r["policy"], r["budget"]): r for r in datasets(specs["accuracy_memory"])}
    # fiited@0.05: AUC 0.701, 0.703, 0.705 -> mean 0.703, sample sd 0.002: bars from 0.701 to 0.705
    fiited = points[("fiited", "0.05")]
    assert (fiited["total_mib"], fiited["payload_mib"], fiited["auc"], fiited["lo"], fiited["hi"]) == \
        pytest.approx((2.0, 1.0, 0.703, 0.701, 0.705))
    # every evaluation (steps 10 and 20) of every run, as the mean over the three seeds with a band of one sd
    steps = {(r["policy"], r["budget"], r["step"]): r for r in datasets(specs["auc_steps"])}
    assert len(steps) == 16 and all(r["seeds"] == 3 for r in steps.values())
    assert (steps[("fiited", "0.05", 10)]["auc"], steps[("fiited", "0.05", 20)]["lo"]) == pytest.approx((0.693, 0.701))


def test_training_ranking_calls_ties_by_the_paired_rule():
    """At 0.05 (fiited first, mean 0.7030): hash d = fiited - hash = (-0.001, +0.003, -0.001), signs differ:
    a tie; uniform-dim d = (0.0010, 0.0005, 0.0010), mean 0.00083 > sd 0.00029 and all positive: below.
    At 0.25: hash d = (0.003, 0.003, 0.0025), uniform-dim d = (0.004, 0.004, 0.004): both below, fiited wins.
    full (0.7100 on every seed) against fiited: at 0.05 d = (0.009, 0.007, 0.005), mean 0.007 > sd 0.002, all
    positive: fiited below; at 0.25 d = (0.001, 0.002, 0), mean 0.001, sd 0.001: a tie."""

    page = train_page()
    first, second = section(page, "ranking").split('<div class="budget">')[1:]
    assert "No single winner: <b>fiited</b> ties with hash (and beats uniform-dim)." in first
    assert "<b>hash</b> 0.7027 ± 0.0031 in 1.00 MiB" in first
    assert '(-0.0003 vs fiited, paired sd 0.0023: <span class="verdict">tie</span>)' in first
    assert '(-0.0008 vs fiited, paired sd 0.0003, 3/3 seeds: <span class="verdict">below</span>)' in first
    assert ('fiited against it (-0.0070 vs full, paired sd 0.0020, 3/3 seeds: <span class="verdict">below</span>)'
            in first) and "over the budget" in first
    assert "Winner: <b>fiited</b>, ahead of every other policy on all 3 seeds" in second and "ties with" not in second
    assert 'fiited against it (-0.0010 vs full, paired sd 0.0010: <span class="verdict">tie</span>)' in second
    assert "collisions: 40.0% of lookups" in first
    # the rule is on the page, with the seeds and the touched rows
    how = page.split('class="how"', 1)[1].split("</div>", 1)[0]
    assert "mean of d exceeds the sample standard deviation of d" in how and "every seed" in how
    head = page.split("<nav>")[0]
    assert "seeds 0, 1, 2" in head and "touched 3,000 rows (per field: 1,000, 2,000), 4.00 MiB dense" in head
    assert ("<b>Budget 0.25</b>: 5,242,880 bytes (5.00 MiB) = 25% of the dense size (20.00 MiB) and 1.25x of the "
            "dense size of the 3,000 rows touched (4.00 MiB): it holds every touched row") in second


def test_training_equal_memory_table_marks_ties():
    """Common range [2, 4] MiB (fiited 2..8, uniform-dim and hash 1..4; full, at 16 only, is not interpolated).
    At 4 MiB: hash measured (0.7060, 0.7050, 0.7075), mean 0.70617, the best; fiited halfway from 2 to 8 MiB
    (0.7050, 0.7055, 0.7075), mean 0.7060: d = hash - fiited = (0.001, -0.0005, 0): a tie; uniform-dim measured
    (0.7050, 0.7040, 0.7060): d = (0.001, 0.001, 0.0015), mean 0.00117 > sd 0.00029, all positive: below."""

    table = section(train_page(), "equal-memory")
    rows = [r.split("</td><td>") for r in re.findall(r"<tr><td>(.*?)</td></tr>", table)]
    assert [r[0] for r in rows] == ["2.00 MiB", "2.38 MiB", "2.83 MiB", "3.36 MiB", "4.00 MiB"]
    assert rows[-1] == ["4.00 MiB", "hash &mdash; tied with fiited", "0.7060 (-0.0002, <b>tie</b>)",
                        "0.7050 (-0.0012, below on 3/3 seeds)", "<b>0.7062</b> best"]
    assert "full (0.05: 0.7100 in 16.00 MiB)" in table


def test_training_with_one_seed_does_not_call_ties():

    page = train_page(seeds=(0,))
    ranking = section(page, "ranking")
    assert ranking.count("One seed: no spread, cannot call ties") == 2
    assert "Winner" not in ranking and ">tie<" not in ranking and ">below<" not in ranking
    assert "One seed: no spread, cannot call ties" in section(page, "equal-memory")


def _without_auc(outputs, seeds_without: tuple):
    """`outputs` as if the evaluation split of each seed of `seeds_without` held one class: AUC null there."""
    for stats in outputs.summary["policies"].values():
        for entry in stats["per_seed"]:
            if entry["seed"] in seeds_without:
                entry["auc"] = None
        aucs = [e["auc"] for e in stats["per_seed"] if e["auc"] is not None]
        stats["auc"] = sum(aucs) / len(aucs) if aucs else None
        stats["auc_std"] = None
    curve = outputs.curve.with_columns(pl.when(pl.col("seed").is_in(list(seeds_without))).then(None)
                                       .otherwise(pl.col("auc")).alias("auc"))
    return outputs.summary, curve


@pytest.mark.parametrize("seeds, without, reason", [
    ((0, 1), (0, 1), "AUC is undefined: the evaluation split holds one class only"),
    ((0, 1, 2), (1, 2), "Only seed 0 has an AUC for every run"),
    ((0,), (0,), "AUC is undefined: the evaluation split holds one class only"),
])
def test_training_without_auc_says_why_not_one_seed(seeds, without, reason):
    """Issue 21, G3: with --seeds 0,1 and one class in the evaluation split, the page said "One seed: no
    spread, cannot call ties": AUC was undefined, and two seeds were trained."""
    from report_fixtures import train_outputs

    page = rp.render_train_report(*_without_auc(train_outputs(seeds=seeds), without))
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)))
    if len(seeds) > 1:
        assert "One seed" not in text and "one seed (" not in text, re.findall(r".{80}ne seed.{80}", text)
    assert reason in text
    assert "Winner" not in text and "Highest mean AUC" not in text or len(seeds) - len(without) == 1


def test_training_warnings_at_the_top_and_beside_the_run():

    warning = "fiited@0.25 ran 1 pruning round (interval 5 over steps 0..19): its figures are first-come admission"
    page = train_page(warnings=(warning,))
    assert page.index('class="warnings"') < page.index('id="ranking"') and html.escape(warning) in page
    first, second = section(page, "ranking").split('<div class="budget">')[1:]
    assert "warning 1:" in second and "warning" not in first


def test_training_sweep_page_has_every_section_per_group():
    from report_fixtures import train_outputs

    groups = [(title, o.summary, o.curve) for title, o in (("lr_emb 0.05", train_outputs()),
                                                            ("lr_emb 0.1", train_outputs(seeds=(0,))))]
    page = rp.render_train_sweep_report(groups)
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for i in (0, 1):
        for part in ("ranking", "equal-memory", "summary", "sec-accuracy_memory", "sec-auc_steps"):
            assert f'id="g{i}-{part}"' in page
    assert page.count('class="how"') == 1 and "ties with hash" in page and "cannot call ties" in page


def test_training_ranking_ranks_every_policy_together_saying_what_each_knew():
    """mde@0.25 made 0.001 above fiited@0.25 on every seed: d = 0.001 three times, sd 0, so mde leads, ranked
    with the others and labelled with its sizing window; every run says what it knew."""
    import copy

    from report_fixtures import train_outputs

    outputs = train_outputs()
    mde = copy.deepcopy(outputs.summary["policies"]["fiited@0.25"])
    mde["auc"] += 0.001
    for entry in mde["per_seed"]:
        entry["auc"] += 0.001
    mde["knew"] = "sized from the first 10% of the training split"
    outputs.summary["policies"]["mde@0.25"] = mde
    second = section(rp.render_train_report(outputs.summary, outputs.curve), "ranking").split(
        '<div class="budget">')[2]
    assert ("Winner: <b>mde</b>, ahead of every other policy on all 3 seeds by more than the spread. mde: sized "
            "from the first 10% of the training split.") in second
    assert re.findall(r"\d\. <b>([\w-]+)</b>", second) == ["mde", "fiited", "hash", "uniform-dim"]
    assert second.count("in training, online") == 1 and second.count("sized from the whole training split") == 2


# ---------------------------------------------------------------------------
# Issue 14, item 8: valid JSON of the wrong types or out of range is refused on read, not drawn or crashed on


def _first(summary: dict) -> dict:
    return next(iter(summary["policies"].values()))


WRONG = [
    ("a metric as a string", lambda s: _first(s).__setitem__("total_bytes_final", "12"),
     ["total_bytes_final is \"12\", not an integer >= 0"]),
    ("dim_hist_final null", lambda s: _first(s).__setitem__("dim_hist_final", None),
     ["dim_hist_final is null, not a list of counts"]),
    ("a hit rate of 7.5", lambda s: _first(s).__setitem__("chunk_hit_rate", 7.5),
     ["chunk_hit_rate is 7.5, outside 0..1"]),
    ("a negative fragmentation", lambda s: _first(s).__setitem__("fragmentation_final", -0.5), ["outside 0..1"]),
    ("a count as true", lambda s: _first(s).__setitem__("rehashes", True), ["rehashes is true, not an integer"]),
    ("NaN", lambda s: _first(s).__setitem__("mean_probe_length", float("nan")), ["mean_probe_length is nan"]),
    ("theta as text", lambda s: _first(s).__setitem__("theta_final", "inf"), ["theta_final is \"inf\""]),
    ("budgets as text", lambda s: s["config"].__setitem__("budgets", "0.1"), ["config budgets is \"0.1\""]),
    ("budget bytes as text", lambda s: s["config"]["budgets"][0].__setitem__("bytes", "9"), ["config budgets"]),
    ("dense size as text", lambda s: s["trace"].__setitem__("dense_bytes", "5"), ["trace dense_bytes is \"5\""]),
    ("steps as floats", lambda s: s["trace"].__setitem__("last_step", 2.5), ["trace last_step is 2.5"]),
    ("path as a number", lambda s: s["trace"].__setitem__("path", 5), ["trace path is 5, not a path"]),
]


@pytest.mark.parametrize("change, words", [(c, w) for _, c, w in WRONG], ids=[i for i, _, _ in WRONG])
def test_report_refuses_a_summary_of_wrong_types_or_ranges(monkeypatch, capsys, tmp_path, run_dir, change, words):
    """A metric as a string or dim_hist_final null crashed with a TypeError; a hit rate of 7.5 was drawn as 750%."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    summary = json.loads((folder / "summary.json").read_text())
    change(summary)
    (folder / "summary.json").write_text(json.dumps(summary))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"], "summary.json",
                  *words, "changed or damaged", "re-run")


def test_report_refuses_a_time_series_column_of_text(monkeypatch, capsys, tmp_path, run_dir):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    path = next((folder / "timeseries").iterdir())
    frame = pl.read_parquet(path)
    frame.with_columns(pl.col("lookups").cast(pl.String)).write_parquet(path)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"],
                  "column lookups has type String, not numbers")


def test_training_report_opens_with_memory_at_equal_quality():
    """From TRAIN_RUNS (report_fixtures), full is 0.7100 on every seed at 16 MiB. fiited at 2 MiB: d = (-0.009,
    -0.007, -0.005), every seed below by more than the sd 0.002: below. At 8 MiB: d = (-0.001, -0.002, 0), a tie,
    0.001 below on the mean: at quality. Between them the per-seed d(t) keep every seed negative and the mean's
    size above the sd until t = 1 (at t = 0.9: mean -0.0016, sd 0.0010), so the least memory is the measured 8 MiB
    (payload 4 MiB). uniform-dim at 4 MiB: d = (-0.005, -0.006, -0.004), below; hash at 4 MiB: d = (-0.004, -0.005,
    -0.0025), mean -0.0038 beyond its sd 0.0013 with every seed negative: below. Neither is reached."""
    page = train_page()
    assert page.index('id="equal-quality"') < page.index('id="ranking"')
    table = section(page, "equal-quality")
    assert ("At full's quality, <b>fiited</b> (in training, online) needs the least total memory: 8.00 MiB, 50.0% "
            "less than full. Not reached in the measured range: uniform-dim, hash.") in table
    rows = [r.split("</td><td>") for r in re.findall(r"<tr><td>(.*?)</td></tr>", table)]
    assert rows[0] == ["fiited", "in training, online", "8.00 MiB (50.0% of full&#x27;s)",
                       "4.00 MiB (25.0% of full&#x27;s)"]
    assert rows[1][2] == rows[2][2] == "not reached in the measured range"
    assert rows[-1] == ["full", "dense reference", "16.00 MiB", "16.00 MiB"]
