"""The trainer: recipe, determinism, records, checkpoints the probes read, caching, divergence."""
from __future__ import annotations

import math

import pytest
import torch

from analysis.training import TrainConfig, build, run_many, train
from smoothness import load_checkpoint

TINY = dict(steps=12, warmup=3, batch_size=4, block=16, layers=1, heads=2, width=16, log_every=3, eval_every=6,
            eval_batches=2)


def test_same_seed_same_numbers_and_the_global_rng_is_left_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train(TrainConfig(**TINY), cache_dir=tmp_path / "a", progress=False)
    assert torch.equal(torch.rand(1), before)
    b = train(TrainConfig(**TINY), cache_dir=tmp_path / "b", progress=False)
    c = train(TrainConfig(**TINY, seed=1), cache_dir=tmp_path / "a", progress=False)
    for key in ("train_loss", "grad_norm", "momentum_norm", "update_norm"):
        assert a.history[key] == b.history[key]
    assert a.evals == b.evals and c.history["train_loss"] != a.history["train_loss"]


def test_records_and_recipe(tmp_path):
    config = TrainConfig(**TINY)
    r = train(config, cache_dir=tmp_path, progress=False)
    assert r.history["step"] == [0, 3, 6, 9, 11]
    assert r.evals["step"] == [0, 6, 12] and r.final_val_loss == r.evals["val_loss"][-1]
    assert r.evals["val_loss"][-1] < r.evals["val_loss"][0]  # it learns something in 12 steps
    assert not r.diverged and r.tokens_per_s > 0
    assert all(v > 0 for v in r.history["update_norm"]) and all(v > 0 for v in r.history["momentum_norm"])
    assert r.state_bytes == r.param_bytes + 4 * len(list(build(config, 81)[0].parameters()))  # exp_avg + step
    lrs = [config.lr_at(s) for s in range(config.steps)]
    assert lrs[0] == pytest.approx(config.lr / 3) and max(lrs) == pytest.approx(config.lr)
    assert config.lr_at(config.steps) == pytest.approx(config.min_lr_ratio * config.lr)
    model, opt = build(config, 81)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all((id(p) in decayed) == (p.dim() >= 2) for p in model.parameters())


def test_checkpoints_are_read_by_the_probes_with_their_momentum(tmp_path):
    config = TrainConfig(**TINY, save_every=6)
    r = train(config, cache_dir=tmp_path, progress=False)
    assert [c.rsplit("_", 1)[1] for c in r.checkpoints] == ["000000.pt", "000006.pt", "000012.pt"]
    model, _ = build(config, 81)
    ckpt = load_checkpoint(r.checkpoints[1], model)
    assert ckpt.step == 6 and set(ckpt.momentum) == {n for n, _ in model.named_parameters()}


def test_the_cache_returns_the_stored_result_without_training(tmp_path, monkeypatch):
    config = TrainConfig(**TINY)
    first = train(config, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr("analysis.training.build", lambda *a: pytest.fail("trained again"))
    assert train(config, cache_dir=tmp_path, progress=False).to_dict() == first.to_dict()
    assert TrainConfig(**TINY, lr=1e-3).key() != config.key()


def test_divergence_is_recorded_not_raised(tmp_path):
    r = train(TrainConfig(**TINY, optimizer="sgdm", lr=1e4, clip=None), cache_dir=tmp_path, progress=False)
    assert r.diverged and math.isnan(r.final_val_loss)


def test_parallel_runs_equal_sequential_runs(tmp_path):
    configs = [TrainConfig(**TINY, optimizer=name) for name in ("adams", "adamw")]
    parallel = run_many(configs, workers=2, cache_dir=tmp_path / "p", progress=False)
    sequential = run_many(configs, workers=1, cache_dir=tmp_path / "s", progress=False)
    for a, b in zip(parallel, sequential):
        assert a.history["train_loss"] == b.history["train_loss"] and a.config["optimizer"] == b.config["optimizer"]


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="width 16 is not divisible by heads 3"):
        TrainConfig(**{**TINY, "heads": 3})
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(**{**TINY, "warmup": 50})


def test_data_seed_changes_the_batch_order_and_not_the_initialization(tmp_path):
    same = train(TrainConfig(**TINY), cache_dir=tmp_path, progress=False)
    explicit = train(TrainConfig(**TINY, data_seed=0), cache_dir=tmp_path, progress=False)
    other = train(TrainConfig(**TINY, data_seed=7), cache_dir=tmp_path, progress=False)
    assert explicit.history["train_loss"] == same.history["train_loss"]  # None means "the same as seed"
    assert other.evals["val_loss"][0] == same.evals["val_loss"][0]  # the same initial model
    assert other.history["train_loss"][1:] != same.history["train_loss"][1:]  # other batches
    with pytest.raises(ValueError, match="data_seed"):
        TrainConfig(**TINY, data_seed=-1)


def test_tracking_records_every_kth_step_and_leaves_the_run_unchanged(tmp_path):
    plain = train(TrainConfig(**TINY), cache_dir=tmp_path / "plain", progress=False)
    tracked = train(TrainConfig(**TINY, track_every=4), cache_dir=tmp_path / "tracked", progress=False)
    assert all(tracked.history[k] == plain.history[k] for k in tracked.history if k != "tokens_per_s")  # same run
    assert tracked.evals == plain.evals and plain.track == {}
    t = tracked.track
    assert t["step"] == [0, 4, 8] and set(t) == {"step", "fd_smoothness", "grad_norm", "step_length", "momentum_norm"}
    assert all(v > 0 and math.isfinite(v) for k in ("fd_smoothness", "grad_norm", "step_length", "momentum_norm")
               for v in t[k])
    again = train(TrainConfig(**TINY, track_every=4), cache_dir=tmp_path / "tracked", progress=False)
    assert again.track == t  # stored and read back from the cache
    split = train(TrainConfig(**TINY, track_every=4, track_split=4), cache_dir=tmp_path / "split", progress=False)
    assert split.history["train_loss"] == plain.history["train_loss"]
    assert split.track["step"] == t["step"] and split.track["grad_norm"] == pytest.approx(t["grad_norm"], rel=1e-5)
    assert all(v > 0 for v in split.track["noise_trace"]) and len(split.track["grad_sq_unbiased"]) == 3
    assert train(TrainConfig(**TINY, track_every=4, track_split=4), cache_dir=tmp_path / "split",
                 progress=False).track == split.track  # read back from the cache


def test_an_untracked_configuration_keeps_the_key_it_had_before_tracking_existed():
    import dataclasses
    import hashlib
    import json

    import adams
    from analysis.training import corpus

    config = TrainConfig(**TINY)
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    del record["track_every"], record["track_split"], record["track_seed"]  # the record before these fields
    del record["device"]  # existed: a CPU run untracked keeps its cached key
    payload = json.dumps({"config": record, "version": adams.__version__, "corpus": corpus.SHA256}, sort_keys=True,
                         default=str)
    assert config.key() == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert TrainConfig(**TINY, track_every=2).key() != config.key()
    tracked = TrainConfig(**TINY, track_every=2)
    assert TrainConfig(**TINY, track_every=2, track_split=TINY["batch_size"]).key() != tracked.key()
    with pytest.raises(ValueError, match="track_split"):
        TrainConfig(**TINY, track_split=2)
    with pytest.raises(ValueError, match="track_every"):
        TrainConfig(**TINY, track_every=-1)


def test_denominator_trajectory_reads_adamw_moments_by_name_and_refuses_adams(tmp_path):
    from analysis.training import experiments as ex

    result = train(TrainConfig(**TINY, optimizer="adamw", save_every=6), cache_dir=tmp_path, progress=False)
    out = ex.denominator_trajectory(result, k=8, skip=0.1)
    assert [c["step"] for c in out] == [6, 12]
    (b1, b2), last = result.config["betas"], torch.load(result.checkpoints[-1], weights_only=True)
    m = torch.cat([s["exp_avg"].reshape(-1) for s in last["optimizer"]["state"].values()]).double() / (1 - b1**12)
    v = torch.cat([s["exp_avg_sq"].reshape(-1) for s in last["optimizer"]["state"].values()]).double() / (1 - b2**12)
    assert out[-1]["momentum_sq_over_second_moment"] == pytest.approx(float((m**2).sum() / v.sum()), rel=1e-9)
    adams_run = train(TrainConfig(**TINY, save_every=6), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="Adam or AdamW"):
        ex.denominator_trajectory(adams_run)


def test_the_device_is_a_field_that_leaves_cpu_runs_where_they_were_cached(tmp_path):
    from analysis.training import build
    from analysis.training.config import config_record

    assert TrainConfig(**TINY).device == "cpu" and "device" not in config_record(TrainConfig(**TINY))
    assert TrainConfig(**TINY, device="cpu").key() == TrainConfig(**TINY).key()  # cached runs keep their keys
    assert TrainConfig(**TINY, device="cuda:1").device == "cuda:1"
    assert config_record(TrainConfig(**TINY, device="meta"))["device"] == "meta"
    assert TrainConfig(**TINY, device="meta").key() != TrainConfig(**TINY).key()
    with pytest.raises(ValueError, match="not a device name"):
        TrainConfig(**TINY, device="gpu0")
    with pytest.raises(TypeError, match="device name"):
        TrainConfig(**TINY, device=0)
    # on "meta" the model and the optimizer have their shapes and nothing else
    meta_model, meta_opt = build(TrainConfig(**TINY, device="meta"), 65)
    cpu_model, _ = build(TrainConfig(**TINY), 65)
    assert all(p.is_meta for p in meta_model.parameters())
    assert [p.shape for p in meta_model.parameters()] == [p.shape for p in cpu_model.parameters()]
    with pytest.raises(ValueError, match="shapes but no numbers"):
        train(TrainConfig(**TINY, device="meta"), cache_dir=tmp_path, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(TrainConfig(**TINY, device="cuda"), cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written
