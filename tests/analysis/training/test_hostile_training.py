"""Hostile inputs to the trainer: a bad configuration or argument is refused, naming it, before
anything is written; a run that fails leaves nothing behind; a damaged cached run (corrupt or
tampered JSON, a missing or changed checkpoint, no manifest) is trained again with a warning that
names the file, and never returned as it is."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import analysis.training.loop as training_loop
from analysis.training import corpus
from analysis.training import TrainConfig, build, run_many, train

TINY = dict(steps=4, warmup=1, batch_size=2, block=8, layers=1, heads=1, width=8, log_every=2, eval_every=2,
            eval_batches=1, save_every=2)
CHECKPOINTS = ["step_000000.pt", "step_000002.pt", "step_000004.pt"]

_AN_OBJECT = object()
BAD_CONFIGS = [  # (changes to TINY, error, what the message must say)
    ({"width": 10**12, "heads": 1}, ValueError, r"a model of about 1\.2e\+25 parameters.*MAX_PARAMETERS"),
    ({"min_lr_ratio": -5}, ValueError, r"min_lr_ratio .*\[0, 1\], got -5"),
    ({"min_lr_ratio": 1.5}, ValueError, r"min_lr_ratio .*\[0, 1\], got 1\.5"),
    ({"clip": -1}, ValueError, r"clip .*> 0.*got -1"),
    ({"clip": 0.0}, ValueError, r"clip .*None turns clipping off.*got 0\.0"),
    ({"clip": math.inf}, ValueError, r"clip .*finite.*got inf"),
    ({"lr": math.nan}, ValueError, r"lr .*finite.*> 0, got nan"),
    ({"lr": "3e-3"}, TypeError, r"lr must be a number"),
    ({"betas": (0.9, 1.0)}, ValueError, r"betas\[1\] .*\[0, 1\), got 1\.0"),
    ({"betas": (-0.1, 0.95)}, ValueError, r"betas\[0\] .*\[0, 1\), got -0\.1"),
    ({"betas": (0.9,)}, TypeError, r"betas must be a pair"),
    ({"betas": 0.9}, TypeError, r"betas must be a pair"),
    ({"eps": -1e-8}, ValueError, r"eps .*>= 0, got -1e-08"),
    ({"eps": math.nan}, ValueError, r"eps .*finite"),
    ({"weight_decay": -0.1}, ValueError, r"weight_decay .*>= 0, got -0\.1"),
    ({"weight_decay": math.inf}, ValueError, r"weight_decay .*finite"),
    ({"seed": -1}, ValueError, r"seed .*\[0, 18446744073709551615\], got -1"),
    ({"seed": 2**64}, ValueError, r"seed .*got 18446744073709551616"),
    ({"seed": 1.5}, TypeError, r"seed must be an int, got 1\.5"),
    ({"seed": True}, TypeError, r"seed must be an int, got True"),
    ({"block": 8.0}, TypeError, r"block must be an int, got 8\.0"),
    ({"steps": True}, TypeError, r"steps must be an int, got True"),
    ({"save_every": -1}, ValueError, r"save_every .*>= 0, got -1"),
    ({"optimizer": None}, TypeError, r"optimizer must be a registered name"),
    ({"optimizer_kwargs": {"bias_corection": False}}, ValueError,
     r"'adams' takes no keyword 'bias_corection'; it accepts bias_correction"),
    ({"optimizer_kwargs": {"lr": 1.0}}, ValueError, r"must not set 'lr': set TrainConfig\.lr instead"),
    ({"optimizer_kwargs": {"nonfinite": "maybe"}}, ValueError, r"refused by optimizer 'adams': nonfinite"),
    ({"optimizer_kwargs": {"foreach": _AN_OBJECT}}, TypeError, r"optimizer_kwargs\['foreach'\] must be"),
    ({"optimizer_kwargs": "fused"}, TypeError, r"optimizer_kwargs must be a dict"),
    ({"optimizer": "sgdm", "optimizer_kwargs": {"nesterov": True, "dampening": 0.5}}, ValueError,
     r"refused by optimizer 'sgdm': Nesterov"),
]


def trained_numbers(result) -> dict:
    """Everything a run records except the clock and where its checkpoints are."""
    d = result.to_dict()
    for key in ("seconds", "tokens_per_s", "checkpoints"):
        del d[key]
    del d["history"]["tokens_per_s"]
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as in run_many's workers: the runs are tiny, and the numbers then match theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """One tiny run with three checkpoints, trained once for the whole module."""
    cache = tmp_path_factory.mktemp("cache")
    config = TrainConfig(**TINY)
    return config, cache, train(config, cache_dir=cache, progress=False)


@pytest.fixture
def run_copy(cached_run, tmp_path):
    """A copy of the cached run to damage: (config, cache dir, run dir, the result as trained)."""
    config, cache, result = cached_run
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    return config, copy, copy / config.key(), result


def retrain_with_warning(config, cache, match):
    """Read ``config`` from ``cache`` expecting a CachedRunWarning whose message matches ``match``."""
    with pytest.warns(RuntimeWarning, match=match) as record:
        result = train(config, cache_dir=cache, progress=False)
    assert any(w.category.__name__ == "CachedRunWarning" for w in record)
    return result


def assert_run_is_whole(run_dir: Path, result) -> None:
    """The manifest lists result.json and every checkpoint with its SHA-256, and result.json holds ``result``."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["files"] == {name: sha256(run_dir / name) for name in ["result.json"] + CHECKPOINTS}
    assert [Path(c).name for c in result.checkpoints] == CHECKPOINTS
    assert all(Path(c).parent == run_dir for c in result.checkpoints)
    assert json.loads((run_dir / "result.json").read_text())["final_val_loss"] == result.final_val_loss


# ---------------------------------------------------------------------------------------------
# configurations and arguments


def _case_id(changes: dict) -> str:
    """A test id that is the same in every process (an object's repr holds its address)."""
    return repr(changes).replace(repr(_AN_OBJECT), "<object>")


@pytest.mark.parametrize("changes, error, match", BAD_CONFIGS, ids=[_case_id(c) for c, _, _ in BAD_CONFIGS])
def test_a_bad_configuration_is_refused_by_name_before_anything_is_written(changes, error, match, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(error, match=match):
        train(TrainConfig(**{**TINY, **changes}), cache_dir=cache, progress=False)
    assert not cache.exists()


def test_a_block_longer_than_the_validation_text_is_refused_before_anything_is_written(tmp_path):
    shortest = corpus.load().val.size
    config = TrainConfig(**{**TINY, "block": shortest - 1, "width": 2, "eval_batches": 1})
    with pytest.raises(ValueError, match=rf"block must be < {shortest - 1}.*got {shortest - 1}"):
        train(config, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_bad_arguments_of_train_and_run_many_are_refused_before_anything_is_written(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="cache_dir .* is not a directory"):
        train(TrainConfig(**TINY), cache_dir=not_a_dir, progress=False)
    cache = tmp_path / "cache"
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        train(dict(TINY), cache_dir=cache)
    with pytest.raises(TypeError, match="recompute must be True or False"):
        train(TrainConfig(**TINY), cache_dir=cache, recompute="no")
    with pytest.raises(TypeError, match=r"configs\[1\] must be a TrainConfig, got str"):
        run_many([TrainConfig(**TINY), "adams"], workers=1, cache_dir=cache, progress=False)
    with pytest.raises(ValueError, match="workers must be None or an int >= 1, got -2"):
        run_many([TrainConfig(**TINY)], workers=-2, cache_dir=cache, progress=False)
    assert not cache.exists() and not_a_dir.read_text() == "x"


def test_equal_configurations_are_equal_share_a_key_and_survive_the_json_round_trip():
    a = TrainConfig(**TINY, lr=1, betas=[0, 0.5], optimizer_kwargs={"maximize": False, "bias_correction": False})
    b = TrainConfig(**TINY, lr=1.0, betas=(0.0, 0.5),
                    optimizer_kwargs=(("bias_correction", False), ("maximize", False)))
    assert a == b and a.key() == b.key() and type(a.lr) is float and a.betas == (0.0, 0.5)
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(a)))) == a
    with pytest.raises(ValueError, match="no field.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_the_edges_of_every_range_are_accepted_and_the_keywords_reach_the_optimizer():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    edges = TrainConfig(**{**TINY, "min_lr_ratio": 0.0, "clip": None, "betas": (0.0, 0.999), "eps": 0.0,
                           "weight_decay": 0.0, "warmup": 0, "save_every": 0, "seed": 2**64 - 1},
                        optimizer_kwargs={"bias_correction": False})
    assert torch.equal(torch.rand(1), before)  # checking the keywords drew no random numbers
    assert edges.lr_at(edges.steps) == 0.0 and TrainConfig(**{**TINY, "warmup": 4, "min_lr_ratio": 1.0})
    _, optimizer = build(edges, 81)
    assert all(g["bias_correction"] is False for g in optimizer.param_groups)


# ---------------------------------------------------------------------------------------------
# runs that fail, and the cache


def test_a_run_that_fails_midway_leaves_nothing_and_keeps_the_cached_runs(run_copy, tmp_path, monkeypatch):
    config, cache, run_dir, original = run_copy
    calls = []

    def fail_at_step_2(model, batches):  # after the checkpoint of step 0 was written
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("stopped")
        return 1.0

    monkeypatch.setattr(training_loop, "evaluate", fail_at_step_2)
    for where, kwargs in ((tmp_path / "new" / "cache", {}), (cache, {"seed": 1}), (cache, {})):
        calls.clear()
        with pytest.raises(RuntimeError, match="stopped"):
            train(TrainConfig(**TINY, **kwargs), cache_dir=where, progress=False, recompute=True)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in cache.iterdir()] == [run_dir.name]  # the failed recompute kept the old run
    monkeypatch.setattr(training_loop, "build", lambda *a: pytest.fail("trained again"))
    assert trained_numbers(train(config, cache_dir=cache, progress=False)) == trained_numbers(original)


def test_a_fresh_run_is_written_with_a_manifest_and_read_back_without_training(run_copy, monkeypatch):
    config, cache, run_dir, original = run_copy
    monkeypatch.setattr(training_loop, "build", lambda *a: pytest.fail("trained again"))
    again = train(config, cache_dir=cache, progress=False)
    assert again.to_dict() == {**original.to_dict(), "checkpoints": again.checkpoints}
    assert_run_is_whole(run_dir, again)


def test_corrupt_result_json_is_trained_again_with_a_warning(run_copy):
    config, cache, run_dir, original = run_copy
    (run_dir / "result.json").write_text('{"config": {"optimi')
    again = retrain_with_warning(config, cache, r"result\.json")
    assert trained_numbers(again) == trained_numbers(original)
    assert_run_is_whole(run_dir, again)


@pytest.mark.parametrize("field, value", [("final_val_loss", 0.123), ("n_params", 7)])
def test_a_tampered_value_is_never_returned(run_copy, field, value):
    config, cache, run_dir, original = run_copy
    stored = json.loads((run_dir / "result.json").read_text())
    stored[field] = value
    (run_dir / "result.json").write_text(json.dumps(stored))
    again = retrain_with_warning(config, cache, r"result\.json has SHA-256 [0-9a-f]{64}, the manifest recorded")
    assert getattr(again, field) == getattr(original, field) != value
    assert_run_is_whole(run_dir, again)


def _drop_evals(d):
    del d["evals"]


def _shorten_history(d):
    d["history"]["train_loss"].pop()


def _diverged_as_text(d):
    d["diverged"] = "no"


def _other_config(d):
    d["config"]["lr"] = 1.0


def _drop_checkpoint(d):
    d["checkpoints"].pop()


@pytest.mark.parametrize("tamper, match", [
    (_drop_evals, "must hold the fields"), (_shorten_history, "history columns differ in length"),
    (_diverged_as_text, "diverged must be a bool"), (_other_config, "another configuration"),
    (_drop_checkpoint, "lists the checkpoints")])
def test_a_tampered_result_with_a_matching_digest_fails_the_schema(run_copy, tamper, match):
    config, cache, run_dir, original = run_copy
    stored = json.loads((run_dir / "result.json").read_text())
    tamper(stored)
    (run_dir / "result.json").write_text(json.dumps(stored))
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        manifest["files"]["result.json"] = sha256(run_dir / "result.json")
        manifest_path.write_text(json.dumps(manifest))
    again = retrain_with_warning(config, cache, match)
    assert trained_numbers(again) == trained_numbers(original)
    assert_run_is_whole(run_dir, again)


def test_a_missing_checkpoint_is_noticed_and_trained_again(run_copy):
    config, cache, run_dir, original = run_copy
    (run_dir / "step_000002.pt").unlink()
    again = retrain_with_warning(config, cache, r"step_000002\.pt is missing")
    assert trained_numbers(again) == trained_numbers(original)
    assert torch.load(again.checkpoints[1], weights_only=True)["step"] == 2
    assert_run_is_whole(run_dir, again)


def test_a_changed_checkpoint_is_noticed_and_trained_again(run_copy):
    config, cache, run_dir, original = run_copy
    path = run_dir / "step_000004.pt"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    again = retrain_with_warning(config, cache, r"step_000004\.pt has SHA-256")
    assert trained_numbers(again) == trained_numbers(original)
    assert_run_is_whole(run_dir, again)


@pytest.mark.parametrize("damage, match", [("delete", r"manifest\.json is missing"),
                                           ("garble", r"manifest\.json is not readable JSON"),
                                           ("nested", r"manifest\.json is not readable JSON \(RecursionError"),
                                           ("empty", r"manifest\.json is not a adams-lab/train-run/1 manifest")])
def test_a_run_without_a_sound_manifest_is_trained_again(run_copy, damage, match):
    config, cache, run_dir, original = run_copy
    manifest = run_dir / "manifest.json"
    if damage == "delete":  # as a run cached before manifests were written
        manifest.unlink(missing_ok=True)
    else:
        manifest.write_text({"garble": "{]", "nested": "[" * 100_000}.get(damage, "{}"))
    again = retrain_with_warning(config, cache, match)
    assert trained_numbers(again) == trained_numbers(original)
    assert_run_is_whole(run_dir, again)


def test_run_many_in_a_worker_process_retrains_a_damaged_run(run_copy):
    config, cache, run_dir, original = run_copy
    stored = json.loads((run_dir / "result.json").read_text())
    stored["final_val_loss"] = 0.123
    (run_dir / "result.json").write_text(json.dumps(stored))
    with pytest.warns(RuntimeWarning, match=r"result\.json has SHA-256"):
        [again] = run_many([config], workers=2, cache_dir=cache, progress=False)
    assert trained_numbers(again) == trained_numbers(original)  # one thread there and here
    assert_run_is_whole(run_dir, again)
    assert [p.name for p in cache.iterdir()] == [run_dir.name]
