"""Record what the commands write, to check that a refactoring changed none of it.

    python benchmarks/same_outputs.py record DIR     # run the commands below, write DIR/digest.json
    python benchmarks/same_outputs.py compare A B    # compare two records: exit 1 on any difference

A record runs the installed `fiitedsim` (the `fiitedsim` next to this Python) on small inputs: a replay of the
shipped sample with every policy at three budgets (`--out`, `--report`, `--json` and the printed table), its
`report` from the saved folder, `inspect` (JSON and tables), a generated trace (its bytes), a replay sweep, a
sweep over generated traces, a two-seed training run with its report and outputs, a data sweep, and a few
refused inputs (their error line and exit code). Every output file and every command's stdout, stderr and exit
code go into `digest.json`, each as a sha256 of its normalised content:

- wall time (`seconds` fields of JSON, the `seconds` column of Parquet files and of the training report's
  table) is the one allowed difference, so it is blanked;
- the record's own folder is replaced by `$OUT` in text (paths are part of summaries and reports), and the
  checkout this script is in by `$REPO` (the shipped sample's path), so a copy of the tree compares too;
- sweep point keys (sha256 of a point's configuration, which holds its trace files' modification times) are
  replaced by their order of first appearance, so a generated trace written anew still compares.

Everything else is compared byte for byte. The one intended difference of issue 15 is the renamed option
`generate --tables` (now `--table-count`): the record uses whichever the installed command has.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
FIITEDSIM = str(Path(sys.executable).with_name("fiitedsim"))
SAMPLE = HERE.parent / "fiitedsim" / "data" / "sample.parquet"
KEY = re.compile(r"\b[0-9a-f]{64}\b")

REPLAY_SWEEP = """[sweep]
traces = ["{sample}"]
policies = ["fiited", "uniform-dim", "row-prune", "lru"]
budgets = [0.05, "10%"]
gamma = [0.99, 0.999]
out = "replay-sweep"
"""
GENERATE_SWEEP = """[sweep]
generate = {profile = "zipf", tables = 2, rows = 3000, steps = 60, batch = 64, seed = [0, 1]}
policies = ["fiited", "hash", "uniform-row"]
budgets = [0.05, 0.2]
interval = 20
out = "generate-sweep"
"""
TRAIN_SWEEP = """[sweep]
data = ["synthetic"]
policies = ["fiited", "full"]
budgets = [0.1]
samples = 3000
fields = 3
rows = 1000
batch = 256
page_bytes = 1024
seed = [0, 1]
out = "train-sweep"
"""
BAD_SWEEP = """[sweep]
traces = ["{sample}"]
policies = ["fiited"]
budgets = [0.1, 0.1]
out = "bad"
"""


def generate_count_option() -> str:
    """`--table-count` after issue 15, `--tables` before it."""
    text = subprocess.run([FIITEDSIM, "generate", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}).stdout
    return "--table-count" if "--table-count" in text else "--tables"


def commands(out: Path) -> list[tuple[str, list[str]]]:
    count = generate_count_option()
    (out / "replay-sweep.toml").write_text(REPLAY_SWEEP.format(sample=SAMPLE))
    (out / "generate-sweep.toml").write_text(GENERATE_SWEEP)
    (out / "train-sweep.toml").write_text(TRAIN_SWEEP)
    (out / "bad-sweep.toml").write_text(BAD_SWEEP.format(sample=SAMPLE))
    train = ["train", "--data", "synthetic", "--samples", "6000", "--fields", "4", "--rows", "2000", "--batch", "256",
             "--page-bytes", "1024", "--policy", "fiited,uniform-dim,hash,full", "--budget", "0.05,0.1",
             "--seeds", "0,1"]
    return [
        ("replay-all", ["replay", "--policy", "all", "--budget", "0.02,0.05,0.1", "--out", "replay",
                        "--report", "replay.html", "--json", "-q"]),
        ("replay-table", ["replay", "--budget", "0.1", "-q"]),
        ("replay-knobs", ["replay", "--policy", "fiited,row-prune,mde", "--budget", "64KiB", "--dim", "32",
                          "--chunk", "4", "--page-bytes", "4096", "--interval", "37", "--allocator", "lifo",
                          "--budget-covers", "all", "--report-every", "50", "--json", "-q"]),
        ("report", ["report", "replay", "-o", "report.html"]),
        ("inspect-json", ["inspect", "--json", "-q"]),
        ("inspect-table", ["inspect", "--compare", "meta2021", "-q"]),
        ("generate", ["generate", "gen.parquet", "--profile", "meta2022", count, "3", "--rows", "5000",
                      "--steps", "40", "--batch", "64", "--dim", "16", "--chunk", "4", "--seed", "3", "-q"]),
        ("replay-generated", ["replay", "gen.parquet", "--policy", "fiited,hash", "--budget", "0.1", "--json",
                              "-q"]),
        ("sweep-replay", ["sweep", "replay-sweep.toml", "--workers", "1", "-q"]),
        ("sweep-generate", ["sweep", "generate-sweep.toml", "--workers", "1", "-q"]),
        ("train", [*train, "--out", "train", "--report", "train.html", "-q"]),
        ("train-emit", ["train", "--data", "synthetic", "--samples", "3000", "--fields", "3", "--rows", "1000",
                        "--batch", "256", "--page-bytes", "1024", "--policy", "fiited", "--budget", "0.2",
                        "--emit-trace", "emit.parquet", "--emit-importance", "emit-imp.parquet", "-q"]),
        ("sweep-train", ["sweep", "train-sweep.toml", "-q"]),
        ("bad-budget", ["replay", "--budget", "0.1,", "-q"]),
        ("bad-policy", ["train", "--policy", "lru", "-q"]),
        ("bad-chunk", ["generate", "bad.parquet", "--dim", "10", "--chunk", "4", "-q"]),
        ("bad-sweep", ["sweep", "bad-sweep.toml", "-q"]),
        ("bad-option", ["replay", "--gamma", "2", "-q"]),
    ]


def normalise_text(text: str, out: Path, keys: dict[str, str]) -> str:
    text = text.replace(str(out), "$OUT").replace(str(HERE.parent), "$REPO")  # the checkout: the sample's path
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)  # a table's title line is padded to its width after a path
    text = re.sub(r" in [0-9.]+ s \([0-9.]+ M lookups/s\)", " in S s", text)  # generate's speed
    text = KEY.sub(lambda m: keys.setdefault(m.group(0), f"KEY{len(keys)}"), text)
    return text


def blank_seconds_column(html: str) -> str:
    """The training report's tables with a `seconds` column: that column's cells (the one before the notes)."""
    def table(match: re.Match) -> str:
        return re.sub(r"<td>[0-9.,]+</td>(<td>(?:(?!</td>).)*</td></tr>)", r"<td>S</td>\1", match.group(0),
                      flags=re.S)
    return re.sub(r"<table(?:(?!</table>).)*<th>seconds</th>(?:(?!</table>).)*</table>", table, html, flags=re.S)


def blank_seconds(value):
    if isinstance(value, dict):
        return {k: (None if k == "seconds" else blank_seconds(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [blank_seconds(v) for v in value]
    return value


def normalise_file(path: Path, out: Path, keys: dict[str, str]) -> str:
    if path.suffix == ".parquet":  # bytes, unless a column holds wall time, a path or a point key
        frame = pl.read_parquet(path)
        strings = [c for c, t in frame.schema.items() if t == pl.String]
        normalised = frame.with_columns(
            pl.col(c).map_elements(lambda v: normalise_text(v, out, keys), return_dtype=pl.String) for c in strings)
        if "seconds" in frame.columns:
            normalised = normalised.with_columns(pl.lit(None).alias("seconds"))
        if not normalised.equals(frame) or path.parent.name == "points":
            return "frame:" + str(normalised.schema) + normalised.write_ndjson()
        return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return normalise_text(json.dumps(blank_seconds(json.loads(text)), indent=1), out, keys)
    if path.suffix == ".html":
        text = blank_seconds_column(text)
    return normalise_text(text, out, keys)


def record(out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=False)
    exits: dict[str, str] = {}
    env = {**os.environ, "COLUMNS": "160"}
    for name, args in commands(out):
        run = subprocess.run([FIITEDSIM, *args], cwd=out, capture_output=True, text=True, env=env)
        print(f"{name}: exit {run.returncode}", file=sys.stderr)
        exits[f"{name}.exit"] = str(run.returncode)
        for stream in ("stdout", "stderr"):
            text = getattr(run, stream)
            if name.startswith("train") and stream == "stdout":  # the printed table's seconds column
                text = re.sub(r"[0-9.]+(\s*│?\s*)$", r"S\1", text, flags=re.M)
            (out / f"{name}.{stream}").write_text(text)
    (out / "exits.json").write_text(json.dumps(exits, indent=1) + "\n")
    write_digest(out)


def write_digest(out: Path) -> None:
    keys: dict[str, str] = {}
    for table in sorted(out.glob("*/points.parquet")):  # point keys numbered in grid order
        for key in pl.read_parquet(table, columns=["key"])["key"]:
            normalise_text(key, out, keys)
    digest = json.loads((out / "exits.json").read_text())
    for name in [p.name.removesuffix(".stdout") for p in sorted(out.glob("*.stdout"))]:
        for stream in ("stdout", "stderr"):
            text = (out / f"{name}.{stream}").read_text()
            digest[f"{name}.{stream}"] = hashlib.sha256(normalise_text(text, out, keys).encode()).hexdigest()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if rel.endswith((".stdout", ".stderr", ".toml")) or rel in ("digest.json", "exits.json"):
            continue
        rel = normalise_text(rel, out, keys)
        digest[rel] = hashlib.sha256(normalise_file(path, out, keys).encode()).hexdigest()
    (out / "digest.json").write_text(json.dumps(digest, indent=1, sort_keys=True) + "\n")
    print(f"{len(digest)} entries in {out / 'digest.json'}", file=sys.stderr)


def compare(a: Path, b: Path) -> int:
    da, db = (json.loads((p / "digest.json").read_text()) for p in (a, b))
    differ = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    for k in differ:
        print(f"differs: {k} ({'only in ' + str(b) if k not in da else 'only in ' + str(a) if k not in db else ''})")
    print(f"{len(da)} entries, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "digest":  # again, after a change of the normalisation
        write_digest(Path(sys.argv[2]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
