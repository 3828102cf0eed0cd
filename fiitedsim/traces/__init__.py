"""Access traces and importance logs (DESIGN.md section 1): every way fiitedsim reads, writes, makes, imports and
inspects them.

* `source`: `TraceSource`, the streaming, validating reader of a trace (a file or a folder of parts) and its
  importance log, and `RecordBatch`, what the policies consume;
* `readahead`: decoding on a second thread, overlapping the policies' kernels;
* `writer`: the trace and importance-log writers (the schema of DESIGN 1.2 and 1.3);
* `generate`: synthetic traces (`fiitedsim generate`), with `profiles`, Meta's published reuse histograms;
* `importers`: `fiitedsim import` (fbgemm .pt, Criteo, CSV/Parquet columns), with `hashing`, the categorical
  hash shared with the trainer;
* `stats`: `fiitedsim inspect`, streaming statistics of a trace.
"""
