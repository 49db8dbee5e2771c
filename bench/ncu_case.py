"""Runs one benchmark case a few times, for Nsight Compute (diagnostic).

    ncu --kernel-name regex:sinkhorn_kernel --launch-skip 2 --launch-count 1 \
        python bench/ncu_case.py 256 64      # n, batch (0: unbatched)
"""

import sys

import torch

import sinsim_ext
from common import embeddings

n, batch = int(sys.argv[1]), int(sys.argv[2])
x, y = embeddings(n, batch=batch or None, device="cuda")
for _ in range(3):
    sinsim_ext.sinkhorn_cost(x, y, max_iter=100, check_finite=False)
torch.cuda.synchronize()
