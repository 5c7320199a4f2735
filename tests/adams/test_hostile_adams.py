"""Hostile and careless input to ``adams``: no code runs on load, and a call that raises changes nothing.

Each test reproduces an input that once ran code, left a model half-loaded, applied half a step or
gave a silent wrong number, and checks the promise that now holds instead: a clear error naming
the problem, raised before anything is written.
"""
import copy
import os
import pickle
import stat
import warnings
from pathlib import Path

import pytest
import torch

import adams
from adams import _build
from adams._checkpoint_files import write_checksums
from adams.distributed import CheckpointError, load_checkpoint, save_checkpoint

PATHS = {"forloop": dict(foreach=False, fused=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _trained(seed=0, steps=2, **kwargs):
    model = _model(seed)
    opt = adams.AdamS(model.parameters(), lr=0.1, **kwargs)
    for i in range(steps):
        opt.zero_grad()
        model(torch.full((5, 3), 1.0 + i)).square().sum().backward()
        opt.step()
    return model, opt


def _snapshot(model, opt):
    """Every parameter, gradient and piece of optimizer state, as independent copies."""
    params = [p.detach().clone() for p in model.parameters()]
    state = {i: {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                 for k, v in opt.state.get(p, {}).items()}
             for i, p in enumerate(model.parameters())}
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, state, groups


def _assert_unchanged(before, model, opt):
    params, state, groups = before
    for p, q in zip(params, model.parameters()):
        assert torch.equal(p, q.detach()) and p.dtype == q.dtype
    now = {i: opt.state[p] for i, p in enumerate(model.parameters()) if opt.state.get(p)}
    assert set(now) == {i for i, s in state.items() if s}, "state was created or dropped"
    for i, entry in now.items():
        assert set(entry) == set(state[i])
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                assert value.shape == state[i][key].shape and torch.equal(value, state[i][key]), (i, key)
            else:
                assert value == state[i][key]
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


# ---- 1. sharded checkpoints: no code runs on load ----

class _Marker:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.fixture()
def saved(tmp_path):
    model, opt = _trained()
    return save_checkpoint(tmp_path / "c", model, opt, extra={"step": 2})


def test_a_metadata_pickle_that_runs_code_is_refused_without_running_it(saved, tmp_path):
    marker = tmp_path / "ran"
    (saved / ".metadata").write_bytes(pickle.dumps(_Marker(marker)))
    model, opt = _trained(1)
    before = _snapshot(model, opt)
    with pytest.raises(CheckpointError, match=r"names \w+\.system, which checkpoint metadata never holds"):
        load_checkpoint(saved, model, opt)
    assert not marker.exists()
    _assert_unchanged(before, model, opt)
    # power: the unrestricted reader of torch.distributed.checkpoint runs it
    import torch.distributed.checkpoint as dcp
    with pytest.raises(Exception):
        dcp.FileSystemReader(str(saved)).read_metadata()
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "not metadata", "path outside"])
def test_damaged_metadata_is_a_checkpoint_error_naming_the_file(saved, damage):
    meta = saved / ".metadata"
    data = meta.read_bytes()
    if damage == "truncated":
        meta.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        meta.write_bytes(bytes(torch.randint(0, 256, (len(data),), generator=torch.Generator().manual_seed(0)).tolist()))
    elif damage == "empty":
        meta.write_bytes(b"")
    elif damage == "not metadata":
        meta.write_bytes(pickle.dumps({"state_dict_metadata": {}}))
    else:  # a storage entry pointing at a file outside the checkpoint
        import torch.distributed.checkpoint as dcp
        metadata = dcp.FileSystemReader(str(saved)).read_metadata()
        info = next(iter(metadata.storage_data.values()))
        info.relative_path = "../elsewhere.distcp"
        (saved.parent / "elsewhere.distcp").write_bytes(b"\0" * 10_000)
        meta.write_bytes(pickle.dumps(metadata))
    model, opt = _trained(1)
    before = _snapshot(model, opt)
    with pytest.raises(CheckpointError, match=r"\.metadata"):
        load_checkpoint(saved, model, opt)
    _assert_unchanged(before, model, opt)


# ---- 2. a failed load leaves the model and optimizer as they were ----

@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_flipped_bytes_in_a_shard_are_found_before_anything_is_loaded(saved, where):
    shard = next(saved.glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    at = int(where * len(data))
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    shard.write_bytes(bytes(data))
    model, opt = _trained(1)
    before = _snapshot(model, opt)
    with pytest.raises(CheckpointError, match=r"\.distcp is damaged.*nothing was loaded"):
        load_checkpoint(saved, model, opt)
    _assert_unchanged(before, model, opt)


class _Payload:
    ran = False

    def __reduce__(self):
        return (setattr, (_Payload, "ran", True))


def test_a_load_that_fails_after_reading_tensors_leaves_model_and_optimizer_untouched(tmp_path):
    """The planted entry is read after the model's tensors: they must not have been copied in, and a
    fresh optimizer must not keep the state made up for the load."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, opt = _trained()
    model_state, optim_state = get_state_dict(model, opt)
    optim_state["param_groups"][0]["lr"] = _Payload()
    with pytest.warns(UserWarning):
        dcp.save({"model": model_state, "optim": optim_state, "extra": {}}, checkpoint_id=str(tmp_path / "evil"))
    for fresh in (False, True):
        target, target_opt = _trained(1, steps=0 if fresh else 2)
        before = _snapshot(target, target_opt)
        with pytest.raises(CheckpointError, match="not plain data"):  # made by DCP directly: no digests
            load_checkpoint(tmp_path / "evil", target, target_opt, verify=False)
        assert _Payload.ran is False
        _assert_unchanged(before, target, target_opt)


def test_a_checkpoint_with_a_bad_hyperparameter_is_refused_before_loading(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, opt = _trained()
    model_state, optim_state = get_state_dict(model, opt)
    optim_state["param_groups"][0]["lr"] = float("nan")
    with pytest.warns(UserWarning):
        dcp.save({"model": model_state, "optim": optim_state, "extra": {}}, checkpoint_id=str(tmp_path / "nan"))
    target, target_opt = _trained(1)
    before = _snapshot(target, target_opt)
    with pytest.raises(CheckpointError, match="lr=nan"):
        load_checkpoint(tmp_path / "nan", target, target_opt, verify=False)
    _assert_unchanged(before, target, target_opt)


def test_a_good_checkpoint_loads_and_one_without_checksums_only_when_told(saved):
    model, opt = _trained(1)
    assert load_checkpoint(saved, model, opt) == {"step": 2}
    reference, reference_opt = _trained()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    (saved / "checksums.json").unlink()  # saved by an older version, or copied without it
    target, target_opt = _trained(2)
    before = _snapshot(target, target_opt)
    with pytest.raises(CheckpointError, match="no checksums.json.*verify=False"):
        load_checkpoint(saved, target, target_opt)
    _assert_unchanged(before, target, target_opt)
    assert load_checkpoint(saved, target, target_opt, verify=False) == {"step": 2}


@pytest.mark.parametrize("damage", ["checksums is a folder", "nested checksums", "symlinked shard",
                                    "symlinked metadata", "unlisted file"])
def test_checkpoint_files_that_are_not_its_own_are_refused(saved, tmp_path, damage):
    shard = next(saved.glob("*.distcp"))
    if damage == "checksums is a folder":
        (saved / "checksums.json").unlink()
        (saved / "checksums.json").mkdir()
    elif damage == "nested checksums":
        (saved / "checksums.json").write_text("[" * 100_000)
    elif damage == "symlinked shard":  # the same bytes, but from outside the checkpoint
        outside = tmp_path / "outside.distcp"
        outside.write_bytes(shard.read_bytes())
        shard.unlink()
        shard.symlink_to(outside)
    elif damage == "symlinked metadata":
        outside = tmp_path / "outside.metadata"
        outside.write_bytes((saved / ".metadata").read_bytes())
        (saved / ".metadata").unlink()
        (saved / ".metadata").symlink_to(outside)
    else:
        (saved / "notes.txt").write_text("planted")
    model, opt = _trained(1)
    before = _snapshot(model, opt)
    with pytest.raises(CheckpointError):
        load_checkpoint(saved, model, opt)
    _assert_unchanged(before, model, opt)


def test_a_failed_load_into_another_optimizer_leaves_it_without_state(saved):
    """DCP gives a stateless torch optimizer its state by a zero-learning-rate step; a load that
    then fails (an AdamS checkpoint has no exp_avg_sq) must take that state back."""
    model = _model(1)
    adamw = torch.optim.AdamW(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError):
        load_checkpoint(saved, model, adamw)
    assert not any(adamw.state.get(p) for p in model.parameters())


@pytest.mark.parametrize("size", [(2**40,), (1025, 1025)])
def test_an_oversized_extra_entry_is_refused_before_it_is_allocated(saved, size):
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    import torch.distributed.checkpoint as dcp
    metadata = dcp.FileSystemReader(str(saved)).read_metadata()
    entry = metadata.state_dict_metadata["extra.step"]
    metadata.state_dict_metadata["extra.step"] = TensorStorageMetadata(entry.properties, torch.Size(size), entry.chunks)
    (saved / ".metadata").write_bytes(pickle.dumps(metadata))
    (saved / "checksums.json").unlink()
    write_checksums(saved)  # digests catch damage, not a forger: the metadata checks must hold alone
    with pytest.raises(CheckpointError, match="extra entry 'step' has shape"):
        load_checkpoint(saved, *_trained(1))


# ---- 3. a step that raises has changed nothing; load_state_dict checks what it is given ----

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("corruption", ["exp_avg shape", "exp_avg dtype", "exp_avg missing", "step fraction",
                                        "step negative", "step shape"])
def test_a_step_on_corrupted_state_raises_before_writing(path, corruption):
    model, opt = _trained(**PATHS[path])
    last = list(model.parameters())[-1]
    state = opt.state[last]
    if corruption == "exp_avg shape":
        state["exp_avg"] = torch.zeros(last.numel() + 1)
    elif corruption == "exp_avg dtype":
        state["exp_avg"] = state["exp_avg"].double()
    elif corruption == "exp_avg missing":
        del state["exp_avg"]
    elif corruption == "step fraction":
        state["step"] = torch.tensor(2.5)
    elif corruption == "step negative":
        state["step"] = torch.tensor(-1.0)
    else:
        state["step"] = torch.zeros(2)
    model(torch.ones(5, 3)).square().sum().backward()
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match="no parameter or state was changed|not 'step' and an 'exp_avg'"):
        opt.step()
    _assert_unchanged(before, model, opt)


def test_load_state_dict_refuses_a_momentum_of_the_wrong_shape():
    model, opt = _trained()
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][0]["exp_avg"] = torch.zeros(7)
    target, target_opt = _trained(1)
    before = _snapshot(target, target_opt)
    with pytest.raises(ValueError, match=r"parameter 0 \(shape \(4, 3\)\): exp_avg has shape \(7,\)"):
        target_opt.load_state_dict(saved)
    _assert_unchanged(before, target, target_opt)


@pytest.mark.parametrize("change, match", [
    (lambda s: s["state"][1].pop("exp_avg"), r"\['exp_avg'\] are missing"),
    (lambda s: s["state"][1].update(exp_avg=[0.0] * 4), "not a tensor"),
    (lambda s: s["state"][1].update(step=-3), "not a whole number"),
    (lambda s: s["state"][1].update(step=float("inf")), "not a whole number"),
    (lambda s: s["state"].update({1: "state"}), "is a str, not a dict"),
    (lambda s: s["param_groups"][0].update(betas=(0.9, 1.5)), r"betas\[1\]=1.5"),
    (lambda s: s["param_groups"][0].update(lr="fast"), "lr must be a number"),
    (lambda s: s["param_groups"][0].update(bias_correction="no"), "bias_correction must be True or False"),
    (lambda s: s.pop("param_groups"), "expected a dict with 'state' and 'param_groups'"),
    (lambda s: s["param_groups"][0].pop("betas"), "has no betas"),
    (lambda s: s["param_groups"][0].pop("lr"), "has no lr"),
    (lambda s: s["state"][1].update(step=s["state"][0]["step"]), "same tensor as parameter 0's"),
    (lambda s: s["state"][1].update(exp_avg=s["state"][1]["exp_avg"].to_sparse()), "layout torch.sparse_coo"),
    (lambda s: s["state"][1].update(exp_avg=torch.zeros(1).expand(4)), "expanded"),
    (lambda s: s["state"][1].update(step=10**400), "not a whole number"),
    (lambda s: s["state"][1].update(step=torch.tensor(2 + 0j)), "not one real number"),
])
def test_load_state_dict_names_what_is_wrong(change, match):
    model, opt = _trained()
    saved = copy.deepcopy(opt.state_dict())
    change(saved)
    target, target_opt = _trained(1)
    before = _snapshot(target, target_opt)
    with pytest.raises((TypeError, ValueError), match=match):
        target_opt.load_state_dict(saved)
    _assert_unchanged(before, target, target_opt)


def test_convert_takes_only_adam_or_adamw_state():
    model = _model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)  # no momentum: an empty state
    model(torch.ones(5, 3)).square().sum().backward()
    sgd.step()
    opt = adams.AdamS(model.parameters(), lr=0.1)
    opt.step()
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match="convert=True takes an Adam or AdamW state"):
        opt.load_state_dict(sgd.state_dict(), convert=True)
    _assert_unchanged(before, model, opt)


def test_missing_optional_group_keys_are_filled_and_a_missing_lr_stops_a_step():
    model, opt = _trained()
    saved = copy.deepcopy(opt.state_dict())
    del saved["param_groups"][0]["bias_correction"]  # as saved before the option existed
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["bias_correction"] is True
    del opt.param_groups[0]["lr"]
    model(torch.ones(5, 3)).square().sum().backward()
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match="has no lr"):
        opt.step()
    _assert_unchanged(before, model, opt)


@pytest.mark.parametrize("path", PATHS)
def test_a_step_counter_shared_by_two_parameters_is_refused(path):
    model, opt = _trained(**PATHS[path])
    first, second = list(model.parameters())[:2]
    opt.state[second]["step"] = opt.state[first]["step"]
    model(torch.ones(5, 3)).square().sum().backward()
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match="step counters 0 and 1 are one tensor"):
        opt.step()
    _assert_unchanged(before, model, opt)


def test_a_size_one_dimension_with_zero_stride_is_not_an_overlap():
    base = torch.arange(6.0)
    w = torch.nn.Parameter(base.as_strided((1, 3, 2), (0, 1, 3)).clone().as_strided((1, 3, 2), (0, 2, 1)))
    w.grad = torch.ones(1, 3, 2)
    adams.AdamS([w], lr=0.1).step()  # no error: one element per address


def test_adamw_state_is_refused_unless_converted_and_conversion_keeps_adams_betas():
    model = _model()
    adamw = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(5, 3)).square().sum().backward()
    adamw.step()
    opt = adams.AdamS(model.parameters(), lr=0.1)
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match="another optimizer.*convert=True"):
        opt.load_state_dict(adamw.state_dict())
    _assert_unchanged(before, model, opt)
    stripped = copy.deepcopy(adamw.state_dict())
    for group in stripped["param_groups"]:
        for key in ("amsgrad", "capturable", "differentiable", "decoupled_weight_decay"):
            group.pop(key, None)
    with pytest.raises(ValueError, match="exp_avg_sq.*convert=True"):
        opt.load_state_dict(stripped)
    opt.load_state_dict(adamw.state_dict(), convert=True)
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    for p in model.parameters():
        assert sorted(opt.state[p]) == ["exp_avg", "step"]
        assert torch.equal(opt.state[p]["exp_avg"], adamw.state[p]["exp_avg"])
        assert opt.state[p]["step"].item() == 1
    opt.step()  # continues from AdamW's momentum
    assert all(opt.state[p]["step"].item() == 2 for p in model.parameters())


# ---- 4. memory shared between the tensors of a step ----

@pytest.mark.parametrize("path", PATHS)
def test_a_gradient_overlapping_its_parameter_is_refused_on_every_path(path):
    s = torch.linspace(-1, 1, 1_000_001)
    w = torch.nn.Parameter(s[1:])
    w.grad = s[:-1]
    opt = adams.AdamS([w], lr=0.1, **PATHS[path])
    before = s.clone()
    with pytest.raises(ValueError, match="grad 0 shares memory with param 0"):
        opt.step()
    assert torch.equal(s, before) and not opt.state


@pytest.mark.parametrize("path", PATHS)
def test_overlapping_parameters_are_refused_on_every_path(path):
    s = torch.linspace(-1, 1, 100)
    a, b = torch.nn.Parameter(s[:60]), torch.nn.Parameter(s[40:])
    opt = adams.AdamS([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, **PATHS[path])
    a.grad, b.grad = torch.ones(60), torch.ones(60)
    before = s.clone()
    with pytest.raises(ValueError, match="param 1 shares memory with param 0"):
        opt.step()
    assert torch.equal(s, before)


def test_disjoint_views_of_one_buffer_are_fine_and_match_separate_tensors():
    s = torch.linspace(-1, 1, 100)
    views = [torch.nn.Parameter(s[:50]), torch.nn.Parameter(s[50:])]
    copies = [torch.nn.Parameter(v.detach().clone()) for v in views]
    for group in (views, copies):
        opt = adams.AdamS(group, lr=0.1)
        for p in group:
            p.grad = torch.linspace(0, 1, 50)
        opt.step()
    assert all(torch.equal(v, c) for v, c in zip(views, copies))


# ---- 8. hyperparameters ----

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=float("inf")), ValueError, "lr=inf"),
    (dict(eps=float("inf")), ValueError, "eps=inf"),
    (dict(weight_decay=float("inf")), ValueError, "weight_decay=inf"),
    (dict(lr="0.1"), TypeError, "lr must be a number, got str"),
    (dict(betas=("0.9", 0.95)), TypeError, r"betas\[0\] must be a number"),
    (dict(bias_correction="no"), TypeError, "bias_correction must be True or False"),
    (dict(maximize=1), TypeError, "maximize must be True or False"),
    (dict(lr=True), TypeError, "lr must be a number, got bool"),
])
def test_unusable_hyperparameters_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        adams.AdamS([torch.nn.Parameter(torch.zeros(2))], **kwargs)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("key, value, match", [
    ("lr", float("nan"), "lr=nan"), ("lr", "0.1", "lr must be a number"), ("eps", float("inf"), "eps=inf"),
    ("betas", (0.9, 1.0), r"betas\[1\]=1.0"), ("maximize", "yes", "maximize must be True or False"),
])
def test_a_hyperparameter_set_after_construction_is_checked_at_the_step(path, key, value, match):
    model, opt = _trained(**PATHS[path])
    opt.param_groups[0][key] = value
    model(torch.ones(5, 3)).square().sum().backward()
    before = _snapshot(model, opt)
    with pytest.raises((TypeError, ValueError), match=match):
        opt.step()
    _assert_unchanged(before, model, opt)


def test_the_kernel_cache_is_private_and_a_shared_one_is_refused(tmp_path, monkeypatch):
    fresh = tmp_path / "mine" / "kernels"
    _build._private_directory(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(_build.BuildError, match="can be written by other users"):
        _build.load(shared)
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(other).st_uid + 1)
    with pytest.raises(_build.BuildError, match="belongs to user id"):
        _build.load(other)


def test_a_cached_kernel_others_can_write_is_not_loaded(tmp_path):
    directory = tmp_path / "k"
    kernel = _build.load(directory)
    index = next(directory.glob("*.txt"))
    assert _build._load_verified(index) is not None
    kernel.path.chmod(0o666)  # a file another user could have replaced
    assert _build._load_verified(index) is None


# ---- 9. a scheduler that moves the betas ----

def test_one_cycle_with_cycled_momentum_warns_once_and_fixed_betas_do_not():
    for cycle, expected in ((True, 1), (False, 0)):
        model = _model()
        opt = adams.AdamS(model.parameters(), lr=3e-4, betas=(0.9, 0.95))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=50, cycle_momentum=cycle)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(50):
                opt.zero_grad()
                model(torch.ones(4, 3)).square().sum().backward()
                opt.step()
                sched.step()
        moved = [w for w in caught if "betas of parameter group 0 moved" in str(w.message)]
        assert len(moved) == expected, [str(w.message) for w in caught]
        if moved:
            assert "step (adams.step_bound) from 1.026 to" in str(moved[0].message)
            assert Path(moved[0].filename).name == Path(__file__).name  # points at the user's step()


def test_the_readme_example_keeps_beta1_fixed():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme[readme.index("## Training with AdamS"):]
    example = example[:example.index("```\n", example.index("```python") + 3)]
    assert "OneCycleLR(" in example and "cycle_momentum=False" in example


# ---- property: after any call that raises, parameters and state are bit-identical ----

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_NUMBERS = st.one_of(st.floats(0.0, 0.2), st.sampled_from([float("inf"), float("nan"), -1e-3, "0.1", True, None]))
_BETAS = st.one_of(st.tuples(st.floats(0.0, 0.999), st.floats(0.0, 0.999)),
                   st.sampled_from([(0.9, 1.0), (1.0, 0.95), (0.9,), ("0.9", 0.95), (float("nan"), 0.9)]))
_CORRUPTIONS = ["none", "exp_avg shape", "exp_avg dtype", "exp_avg missing", "step fraction", "step tensor shape",
                "grad overlaps param", "params overlap"]


@st.composite
def _cases(draw):
    shapes = draw(st.lists(st.sampled_from([(), (1,), (3,), (2, 3), (4, 1, 2)]), min_size=1, max_size=3))
    return dict(
        shapes=shapes,
        dtype=draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.complex64])),
        path=draw(st.sampled_from(sorted(PATHS))),
        groups=draw(st.integers(1, 2)),
        changes={key: draw(st.one_of(st.none(), strategy)) for key, strategy in
                 (("lr", _NUMBERS), ("eps", _NUMBERS), ("weight_decay", _NUMBERS), ("betas", _BETAS),
                  ("bias_correction", st.sampled_from([True, False, "no", 0])))},
        corruption=draw(st.sampled_from(_CORRUPTIONS)),
        victim=draw(st.integers(0, 10)),
        seed=draw(st.integers(0, 2**16)),
    )


def _build_case(case):
    gen = torch.Generator().manual_seed(case["seed"])
    dtype, shapes = case["dtype"], case["shapes"]
    real = torch.float32 if dtype == torch.complex64 else dtype
    buffer = torch.randn(sum(max(1, torch.Size(s).numel()) for s in shapes) * 2 + 8, generator=gen).to(real)
    if dtype == torch.complex64:
        buffer = torch.complex(buffer, buffer.flip(0))
    params, at = [], 0
    for shape in shapes:  # disjoint views of one buffer, as flat-parameter schemes lay them out
        n = torch.Size(shape).numel()
        params.append(torch.nn.Parameter(buffer[at:at + n].view(shape)))
        at += max(n, 1)
    split = 1 if case["groups"] == 2 and len(params) > 1 else len(params)
    groups = [{"params": params[:split]}] + ([{"params": params[split:], "lr": 0.05}] if params[split:] else [])
    opt = adams.AdamS(groups, lr=0.1, **PATHS[case["path"]])
    for _ in range(2):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        opt.step()
    return buffer, params, opt


def _corrupt(case, buffer, params, opt) -> bool:
    """Apply the case's corruption and hyperparameter changes; True if the step must now be refused."""
    victim = params[case["victim"] % len(params)]
    state, corruption, start = opt.state[victim], case["corruption"], victim.storage_offset()
    if corruption == "exp_avg shape":
        state["exp_avg"] = torch.zeros(victim.numel() + 1, dtype=victim.dtype)
    elif corruption == "exp_avg dtype":
        state["exp_avg"] = state["exp_avg"].to(torch.complex128 if victim.is_complex() else torch.float16)
    elif corruption == "exp_avg missing":
        del state["exp_avg"]
    elif corruption == "step fraction":
        state["step"] = torch.tensor(1.5)
    elif corruption == "step tensor shape":
        state["step"] = torch.zeros(2)
    elif corruption == "grad overlaps param":  # the gradient starts one element after the parameter
        victim.grad = buffer[start + 1:start + 1 + victim.numel()].view(victim.shape)
    elif corruption == "params overlap":
        if len(params) == 1:
            corruption = "none"
        else:  # the last parameter moved onto the first one's memory
            last, first = params[-1], params[0].storage_offset()
            last.data = buffer[first:first + last.numel()].view(last.shape)
    invalid = corruption != "none"
    for group in opt.param_groups:
        for key, value in case["changes"].items():
            if value is not None:
                group[key] = value
    for key, value in case["changes"].items():
        if value is None:
            continue
        if key == "betas":
            invalid |= not (isinstance(value, tuple) and len(value) == 2 and all(
                isinstance(b, float) and 0.0 <= b < 1.0 for b in value))
        elif key == "bias_correction":
            invalid |= not isinstance(value, bool)
        else:
            invalid |= not (isinstance(value, float) and 0.0 <= value < float("inf"))
    return invalid


def _bits(t):
    t = t.detach()
    return (torch.view_as_real(t) if t.is_complex() else t).contiguous().reshape(-1).view(torch.uint8).clone()


@pytest.mark.filterwarnings("ignore:AdamS. the betas")
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_any_step_that_raises_leaves_parameters_and_state_bit_identical(case):
    """Random shapes, dtypes, paths and hyperparameters, valid or not, and a random corruption of
    the state or of the memory layout: a step must raise exactly when something is wrong, and
    then leave every byte of the parameters and the state as it was."""
    buffer, params, opt = _build_case(case)
    must_fail = _corrupt(case, buffer, params, opt)
    before = (_bits(buffer), [_bits(p) for p in params],
              [{k: _bits(v) for k, v in opt.state[p].items()} for p in params])
    try:
        opt.step()
    except (TypeError, ValueError):
        assert must_fail, case
        assert torch.equal(before[0], _bits(buffer))
        for saved, p in zip(before[1], params):
            assert torch.equal(saved, _bits(p))
        for saved, p in zip(before[2], params):
            assert set(saved) == set(opt.state[p])
            for key, value in saved.items():
                assert torch.equal(value, _bits(opt.state[p][key])), key
    else:
        assert not must_fail, case
