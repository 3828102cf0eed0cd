"""The HTML report without a browser: its structure, its numbers, its size, its bytes, and the CLI around it.

test_report_browser.py opens the same page in Chromium; here we check what can
be read from the file: one spec per chart, the chart libraries exactly once,
nothing fetched from the network, under 5 MB, deterministic, and the numbers
behind the charts against values worked out by hand from tiny made-up results.
"""
from __future__ import annotations

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


def made_up(keys=("alpha", "beta"), budgets=(("0.1", 1000),), windows=4, k=2) -> ReplayResults:
    """Tiny hand-made results. Every key gets the same series:

    step              9     19    29    39
    lookups (cum.)   10     30    30    60      -> lookups per window 10, 20, 0, 30
    row_hits (cum.)   5      5     5    35      -> row hits per window  5,  0, 0, 30
    so the per-window row hit rates are 50%, 0%, (no lookups: no point), 100%;
    chunk counters are twice the row ones (K = 2) and give the same rates.
    payload_bytes = 1 MiB, index_bytes = 0.5 MiB, meta_bytes = 0.25 MiB at every step.
    """
    base = {"lookups": [10, 30, 30, 60], "row_hits": [5, 5, 5, 35]}
    rows = {"step": [9 + 10 * i for i in range(windows)]}
    for name, values in base.items():
        rows[name] = (values * (windows // 4 + 1))[:windows] if windows <= 4 else list(range(windows))
    rows["chunk_hits"] = [2 * v for v in rows["row_hits"]]
    rows["chunks_requested"] = [2 * v for v in rows["lookups"]]
    rows["full_hits"] = rows["row_hits"]
    for column, value in (("payload_bytes", 2**20), ("index_bytes", 2**19), ("meta_bytes", 2**18),
                          ("total_bytes", 2**20 + 2**19 + 2**18), ("mapped_pages", 3)):
        rows[column] = [value] * windows
    rows["fragmentation"] = [0.25] * windows
    rows["theta"] = [float("inf")] * windows  # +infinity in a series must not break the page
    for d in range(k + 1):
        rows[f"dim_{d}"] = [d + 1] * windows
    frame = pl.DataFrame(rows)
    stats = {key: 0 for key in rp.NEEDED_SUMMARY_KEYS}
    stats.update(row_hit_rate=0.5, chunk_hit_rate=0.5, full_hit_rate=0.5, total_bytes_final=2**21,
                 dim_hist_final=list(range(1, k + 2)), mean_probe_length=0.0, fragmentation_final=0.25)
    keyed = len(budgets) > 1
    policies = {(f"{name}@{label}" if keyed else name): dict(stats) for label, _ in budgets for name in keys}
    summary = {"format": RESULTS_FORMAT, "policies": policies,
               "config": {"budgets": [{"label": label, "bytes": b} for label, b in budgets], "policies": list(keys),
                          "budget_covers": "payload"},
               "trace": {"path": "made/up.parquet", "lookups": 60, "first_step": 0, "last_step": 39,
                         "dense_bytes": 4 * 2**20, "tables": [{"name": "t", "rows": 3, "dim": 4, "chunk": 2,
                                                               "dtype_bytes": 4}]}}
    return ReplayResults(summary, {key: frame for key in policies})


def test_window_hit_rates_come_from_counter_differences():
    spec = rp.chart_specs(made_up())["hit_rates"]
    got = sorted((r["what"], r["step"], r["rate"]) for r in datasets(spec) if r["policy"] == "alpha")
    want = sorted((what, step, rate) for what in ("row hit rate", "chunk hit rate", "full hit rate")
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


def test_report_command_into_a_missing_folder_fails_cleanly(monkeypatch, capsys, tmp_path, run_dir):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", run_dir, "-o", tmp_path / "no" / "r.html"],
                  "no", "does not exist")


def test_report_command_writes_the_page(monkeypatch, capsys, tmp_path, run_dir, page):
    result = run(monkeypatch, capsys, "report", run_dir, "-o", tmp_path / "r.html")
    assert result.code == 0 and result.err == f"report in {tmp_path / 'r.html'}\n", result
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
    monkeypatch.setattr(fiitedsim.replay, "replay", no_replay)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--report", tmp_path / "no" / "r.html", "-q"],
                  "does not exist")
    (tmp_path / "dir.html").mkdir()
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--report", tmp_path / "dir.html", "-q"], "is a folder")


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


def test_training_report_draws_auc_against_memory_and_over_steps(tmp_path):
    from report_fixtures import train_outputs

    outputs = train_outputs()
    page = rp.write_train_report(tmp_path / "train.html", outputs).read_text()
    assert page.count(rp.vega_bundle()) == 1 and "<script src" not in page
    assert rp.render_train_report(outputs.summary, outputs.curve) == page  # deterministic
    specs = specs_of(page)
    assert urls_in(specs) == []
    assert sorted(specs) == sorted(rp.TRAIN_CHART_IDS)
    points = {(r["policy"], r["budget"]): (r["payload_mib"], r["auc"]) for r in datasets(specs["accuracy_memory"])}
    assert points == {("fiited", "0.05"): (5.0, 0.701), ("full", "0.05"): (100.0, 0.71),
                      ("fiited", "0.25"): (25.0, 0.709), ("full", "0.25"): (100.0, 0.71)}
    steps = sorted((r["policy"], r["budget"], r["step"], r["auc"]) for r in datasets(specs["auc_steps"]))
    assert steps[:2] == [("fiited", "0.05", 10, 0.691), ("fiited", "0.05", 20, 0.701)] and len(steps) == 8
    assert "0.7500" in page  # the teacher's AUC beside the results


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
