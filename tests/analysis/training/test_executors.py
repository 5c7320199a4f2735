"""run_many with an executor: a process pool and submitit's LocalExecutor (real subprocesses, Slurm's
job API) train into the shared cache, give the numbers of a local run, and skip finished runs."""
from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor

import pytest

from analysis.training import TrainConfig, run_many
from analysis.training.loop import train_job

TINY = dict(steps=8, warmup=2, batch_size=4, block=16, layers=1, heads=2, width=16, log_every=2, eval_every=4,
            eval_batches=2)
CONFIGS = [TrainConfig(**TINY, optimizer="adams", seed=0), TrainConfig(**TINY, optimizer="adamw", seed=1)]


class Counting:
    """An executor that counts what it is given and hands it on."""

    def __init__(self, inner):
        self.inner, self.submitted = inner, []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(args[0]["optimizer"])
        return self.inner.submit(fn, *args, **kwargs)


def _same_numbers(a, b):
    """Bit-identical training (every logged number but the measured throughput)."""
    timed = {"tokens_per_s"}
    return ({k: v for k, v in a.history.items() if k not in timed} == {k: v for k, v in b.history.items() if k not in timed}
            and a.evals == b.evals and a.config == b.config)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return run_many(CONFIGS, workers=1, cache_dir=tmp_path_factory.mktemp("local"), progress=False)


def test_a_process_pool_gives_the_local_numbers_and_a_resubmitted_sweep_submits_nothing(tmp_path, local):
    with ProcessPoolExecutor(max_workers=2) as pool:
        counting = Counting(pool)
        first = run_many(CONFIGS + CONFIGS[:1], executor=counting, cache_dir=tmp_path, progress=False)
        assert counting.submitted == ["adams", "adamw"]  # the repeated configuration is one job
        assert all(_same_numbers(a, b) for a, b in zip(first, local + local[:1]))
        again = Counting(pool)
        second = run_many(CONFIGS, executor=again, cache_dir=tmp_path, progress=False)
    assert again.submitted == [] and all(_same_numbers(a, b) for a, b in zip(second, local))


def test_submitit_local_executor_runs_the_sweep_as_jobs(tmp_path, local):
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=10)
    counting = Counting(executor)
    results = run_many(CONFIGS, executor=counting, cache_dir=tmp_path / "cache", progress=False)
    assert counting.submitted == ["adams", "adamw"]
    assert all(_same_numbers(a, b) for a, b in zip(results, local))
    assert len(list((tmp_path / "jobs").glob("*_result.pkl"))) == 2  # they ran as submitit jobs
    again = Counting(executor)
    run_many(CONFIGS, executor=again, cache_dir=tmp_path / "cache", progress=False)
    assert again.submitted == []


class Broken:
    """An executor whose jobs fail, or end without running anything."""

    def __init__(self, error: Exception | None):
        self.error = error

    def submit(self, fn, *args, **kwargs):
        future = Future()
        if self.error is None:
            future.set_result("nothing was trained")
        else:
            future.set_exception(self.error)
        return future


def test_a_failed_job_is_named_with_its_configuration(tmp_path):
    with pytest.raises(RuntimeError, match=r"the job training TrainConfig\(.*optimizer='adams'.*OSError: node lost"):
        run_many(CONFIGS[:1], executor=Broken(OSError("node lost")), cache_dir=tmp_path, progress=False)


def test_a_job_that_leaves_no_run_in_the_cache_is_an_error_not_a_missing_result(tmp_path):
    with pytest.raises(RuntimeError, match="left no valid run .* file system the jobs share"):
        run_many(CONFIGS[:1], executor=Broken(None), cache_dir=tmp_path, progress=False)


def test_executor_arguments_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="workers .* or executor, not both"):
        run_many(CONFIGS, workers=2, executor=Broken(None), cache_dir=tmp_path, progress=False)
    with pytest.raises(TypeError, match="submit"):
        run_many(CONFIGS, executor="slurm", cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_train_job_is_what_a_worker_runs(tmp_path, local):
    import dataclasses

    key = train_job(dataclasses.asdict(CONFIGS[0]), str(tmp_path))
    assert key == CONFIGS[0].key() and (tmp_path / key / "result.json").is_file()
