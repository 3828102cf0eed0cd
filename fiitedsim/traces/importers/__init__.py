"""Importers: turn other trace formats into fiitedsim access traces (DESIGN.md 1.2).

One module per input format; each writes a valid trace with its table list
in the `fiitedsim.tables` metadata, atomically through `TraceWriter` (a
failed import leaves no output), and streams its input in chunks so that
inputs larger than memory can be converted:

* `fbgemm`:  the (indices, offsets, lengths) tensors of FBGEMM's TBE benchmarks / Meta's dlrm_datasets
* `criteo`:  Criteo display-advertising TSV (or CSV with a header line)
* `columns`: any CSV or Parquet file with named step / table / row columns
"""

#: `fiitedsim import criteo`: samples per training step, and rows of every categorical table.
CRITEO_BATCH, CRITEO_ROWS = 4096, 1_000_000
