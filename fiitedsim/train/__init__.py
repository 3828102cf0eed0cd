"""The pure-NumPy DLRM trainer (`fiitedsim train`).

Idle OpenMP threads must sleep, not spin: Numba's parallel kernels run on
OpenMP threads (its default threading layer here), and the trainer alternates
them with matrix products on its own threads (`threads.ThreadedMatmul`). With
the OpenMP default, the Numba threads kept spinning after each kernel and ran
the products at half speed; PASSIVE measured 52.7 -> 41.5 ms per step of
batch 2048 on two vCPUs (benchmarks/README.md, "Training throughput").
libgomp reads this once, when Numba first starts its threads, so it is set
here, before any trainer kernel can run; a value the user set wins.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
