"""Test-session settings."""
import os

import torch

# With pytest-xdist every worker is its own process; two workers each running torch's 2 OpenMP
# threads on a 2-core machine oversubscribe it and spin-waiting threads slow steps down 100-fold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
