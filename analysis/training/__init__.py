"""Small real training runs: the GPT of :mod:`~analysis.training.gpt` on character-level Shakespeare.

* :mod:`~analysis.training.config`: :class:`TrainConfig`, checked field by field, and :class:`TrainResult`;
* :mod:`~analysis.training.recipe`: the model, its optimizer (any entry of :func:`adams.make_optimizer`),
  batches, loss and evaluation: the nanoGPT recipe the paper's authors used;
* :mod:`~analysis.training.loop`: :func:`train` one configuration, :func:`run_many` in parallel;
* :mod:`~analysis.training.cache`: the run cache, verified by a manifest of SHA-256 digests;
* :mod:`~analysis.training.corpus`: the plays, shipped in ``analysis/training/data/`` with a pinned hash;
* :mod:`~analysis.training.distributed`: the same recipe on several processes (DDP, FSDP2);
* :mod:`~analysis.training.sweep`: learning-rate sweeps that bracket each optimizer's optimum;
* :mod:`~analysis.training.experiments`: the experiments of the training notebooks (configurations,
  seeds, statistics). A new training experiment goes here, its figure in a notebook;
* :mod:`~analysis.training.noise`: gradient noise per coordinate, the momentum against the noise
  model, and AdamS's denominator built from an AdamW run's own state;
* :mod:`~analysis.training.rl`: post-training with a verifiable reward (addition, GRPO), its runs,
  sweeps and rules.

Determinism for a seed: initialization from a forked torch RNG seeded with ``seed``, batches from
``np.random.default_rng(data_seed)`` (``seed`` when ``data_seed`` is None); reruns on the same machine
and thread count give identical numbers. :func:`run_many` takes an executor (a process pool, submitit
for Slurm) as well as local workers.
Checkpoints follow :mod:`adams.checkpoints` and are readable by ``python -m smoothness probe``.
"""
from analysis.training.cache import CachedRunWarning
from analysis.training.config import TrainConfig, TrainResult, default_cache_dir, optimizer_for
from analysis.training.loop import run_many, train
from analysis.training.recipe import (build, evaluate, init_model, lm_loss, momentum_norm, sample_batch,
                                      validation_batches)

__all__ = ["TrainConfig", "TrainResult", "CachedRunWarning", "train", "run_many", "build", "init_model",
           "optimizer_for", "sample_batch", "lm_loss", "evaluate", "momentum_norm", "validation_batches",
           "default_cache_dir"]
