"""Probing the checkpoint folders a Hugging Face ``Trainer`` writes, with no conversion."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import adams
import smoothness
from smoothness.cli import main as cli

transformers = pytest.importorskip("transformers")

CONFIG = dict(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)  # GPT-2 ties lm_head to wte


def _model():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG))


def _batch():
    ids = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(1))
    return ids[:, :-1], ids[:, 1:]


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "run"
    model = _model()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": (ids := torch.randint(0, 32, (16,), generator=g)), "labels": ids.clone()} for _ in range(48)]
    args = transformers.TrainingArguments(output_dir=str(out), max_steps=12, save_steps=4, per_device_train_batch_size=8,
                                          report_to=[], logging_steps=100, use_cpu=True, disable_tqdm=True)
    optimizer = adams.AdamS(model.named_parameters(), lr=1e-3)
    transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None)).train()
    return out, optimizer


def test_a_trainer_folder_loads_with_tied_weights_momentum_and_step(trainer_run):
    out, _ = trainer_run
    model = _model()
    c = smoothness.load_checkpoint(out / "checkpoint-8", model)
    assert c.step == 8 and c.momentum is not None
    assert torch.equal(c.model_state["lm_head.weight"], c.model_state["transformer.wte.weight"])  # restored tie
    assert set(c.momentum) == {n for n, p in model.named_parameters()}


def test_the_last_folder_holds_the_optimizers_own_momentum(trainer_run):
    out, optimizer = trainer_run
    model = _model()
    c = smoothness.load_checkpoint(out / "checkpoint-12", model)
    for group in optimizer.param_groups:
        for name, p in zip(group["param_names"], group["params"]):
            assert torch.equal(c.momentum[name], optimizer.state[p]["exp_avg"])


def test_folders_in_glob_order_are_probed_in_step_order_by_the_api_and_the_cli(trainer_run, tmp_path):
    out, _ = trainer_run
    folders = sorted(out.glob("checkpoint-*"))  # checkpoint-12, -4, -8: the shell's order
    assert [f.name for f in folders] == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every folder stores its step: no order warning
        table = smoothness.probe_trajectory(_model, smoothness.cross_entropy_loss, _batch(), folders, blocks=None,
                                            hessian=False, progress=False)
    assert table["step"].tolist() == [4, 8, 12]
    assert table["momentum_norm"].notna().all() and (table["step_length"].dropna() > 0).all()
    module = tmp_path / "setup_hf.py"
    module.write_text(
        "import torch, transformers\n"
        f"def model():\n    torch.manual_seed(0)\n    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**{CONFIG!r}))\n"
        "def data():\n    ids = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(1))\n"
        "    return ids[:, :-1], ids[:, 1:]\n")
    csv = tmp_path / "probe.csv"
    assert cli(["probe", *map(str, folders), "--model", f"{module}:model", "--data", f"{module}:data", "--out", str(csv),
                "--blocks", "none", "--no-hessian"]) == 0
    import pandas as pd

    from_cli = pd.read_csv(csv)
    assert from_cli["step"].tolist() == [4, 8, 12]
    assert from_cli["fd_smoothness"].tolist() == pytest.approx(table["fd_smoothness"].tolist(), rel=1e-6, nan_ok=True)


def test_checkpoints_without_steps_are_ordered_by_the_number_in_their_path_with_a_warning(tmp_path):
    model = torch.nn.Linear(3, 1)
    paths = []
    for k in (100, 20, 5):
        with torch.no_grad():
            model.weight.fill_(float(k))
        paths.append(tmp_path / f"ckpt-{k}.pt")
        torch.save(model.state_dict(), paths[-1])
    loss = lambda m, b: (m(b[0]) - b[1]).pow(2).mean()  # noqa: E731
    batch = (torch.ones(4, 3), torch.zeros(4, 1))
    with pytest.warns(UserWarning, match="ordered by the number in each path"):
        table = smoothness.probe_trajectory(lambda: torch.nn.Linear(3, 1), loss, batch, paths, blocks=None,
                                            hessian=False, progress=False)
    assert table["step"].tolist() == [5, 20, 100]


def test_a_sharded_folder_reads_every_shard(trainer_run, tmp_path):
    from safetensors.torch import load_file, save_file

    out, _ = trainer_run
    full = load_file(str(out / "checkpoint-4" / "model.safetensors"))
    names = sorted(full)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    for shard, keys in shards.items():
        save_file({k: full[k].contiguous() for k in keys}, str(folder / shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    c = smoothness.load_checkpoint(folder, _model())
    assert all(torch.equal(c.model_state[k], full[k]) for k in names) and c.step is None and c.momentum is None


def test_the_cli_needs_no_glue_code_a_config_as_model_and_a_token_file_as_data(trainer_run, tmp_path, capsys):
    import numpy as np
    import pandas as pd

    out, _ = trainer_run
    tokens = np.random.default_rng(0).integers(0, 32, 5000).astype(np.uint16)
    tokens.tofile(tmp_path / "val.bin")  # as nanoGPT writes it
    csv = tmp_path / "probe.csv"
    folders = [str(f) for f in sorted(out.glob("checkpoint-*"))]
    assert cli(["probe", *folders, "--model", str(out / "checkpoint-4"), "--data", str(tmp_path / "val.bin"),
                "--batch-size", "4", "--block", "15", "--out", str(csv), "--blocks", "none", "--no-hessian"]) == 0
    table = pd.read_csv(csv)
    assert table["step"].tolist() == [4, 8, 12] and table["momentum_norm"].notna().all()
    assert cli(["probe", *folders, "--model", str(out / "checkpoint-4" / "config.json"), "--data",
                str(tmp_path / "val.bin"), "--out", str(tmp_path / "b.csv")]) == 2
    assert "needs --batch-size and --block" in capsys.readouterr().err


def test_token_batches_are_seeded_and_bad_token_files_are_named(tmp_path):
    import numpy as np

    from smoothness.cli import token_batch

    np.save(tmp_path / "t.npy", np.arange(100))
    x, y = token_batch(tmp_path / "t.npy", batch_size=3, block=8, seed=1)
    assert x.shape == (3, 8) and torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(x, token_batch(tmp_path / "t.npy",
                                                                                                   batch_size=3, block=8, seed=1)[0])
    np.save(tmp_path / "f.npy", np.ones(10, dtype=np.float32))
    with pytest.raises(ValueError, match="integer token ids"):
        token_batch(tmp_path / "f.npy", batch_size=2, block=4)
    with pytest.raises(ValueError, match="cannot give sequences"):
        token_batch(tmp_path / "t.npy", batch_size=2, block=200)


def test_sharp_edges_say_what_to_pass(trainer_run, tmp_path):
    out, _ = trainer_run
    folders = sorted(out.glob("checkpoint-*"))
    with pytest.raises(TypeError, match="factory that builds the model, not the model"):
        smoothness.probe_trajectory(_model(), smoothness.cross_entropy_loss, _batch(), folders)
    table = smoothness.probe_trajectory(_model, smoothness.cross_entropy_loss, _batch(), folders, blocks="tensor",
                                        hessian=True, progress=False)
    from smoothness.plot import plot_table

    with pytest.raises(ValueError, match="--block-hessian"):
        plot_table(table, measure="hessian_norm", block="transformer.wpe.weight")
    with pytest.raises(ValueError, match="the table's .* blocks: .*transformer.wpe.weight"):
        plot_table(table, block="no.such.block")


def test_every_column_of_a_probe_table_is_documented_in_the_help(trainer_run, capsys):
    from smoothness.trajectory import COLUMNS

    out, _ = trainer_run
    noisy = [_batch(), _batch(), _batch()]
    table = smoothness.probe_trajectory(_model, smoothness.cross_entropy_loss, noisy, sorted(out.glob("checkpoint-*")),
                                        blocks="layer", hessian=True, block_hessian=True, progress=False)
    assert set(table.columns) == set(COLUMNS)
    with pytest.raises(SystemExit):
        cli(["probe", "--help"])
    shown = capsys.readouterr().out
    assert "fd_smoothness" in shown and "grad_sq_unbiased" in shown and "hessian_n_hvp" in shown


def test_an_unnamed_regrouped_optimizer_state_is_refused_unless_momentum_is_skipped(tmp_path):
    # what the Trainer's own optimizer saves: unnamed parameters in two groups (decay on and off)
    model = _model()
    params = dict(model.named_parameters())
    decay = [p for n, p in params.items() if p.ndim >= 2]
    other = [p for n, p in params.items() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay}, {"params": other, "weight_decay": 0.0}], lr=1e-3)
    model(_batch()[0]).logits.sum().backward()
    opt.step()
    path = tmp_path / "ckpt-1.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}, path)
    with pytest.raises(smoothness.CheckpointError, match="in 2 groups.*--no-momentum"):
        smoothness.load_checkpoint(path, _model())
    c = smoothness.load_checkpoint(path, _model(), momentum=False)
    assert c.momentum is None and c.step == 1


def test_adding_checkpoints_to_a_table_replaces_the_old_last_row(trainer_run, tmp_path):
    out, _ = trainer_run
    folders = [out / f"checkpoint-{k}" for k in (4, 8, 12)]
    csv = tmp_path / "t.csv"
    first = smoothness.probe_trajectory(_model, smoothness.cross_entropy_loss, _batch(), folders[:2], blocks=None,
                                        hessian=False, progress=False, out=csv)
    assert first["step"].tolist() == [4, 8] and np.isnan(first["fd_smoothness"].iloc[-1])
    with pytest.warns(UserWarning, match="1 rows of the table paired a checkpoint"):
        again = smoothness.probe_trajectory(_model, smoothness.cross_entropy_loss, _batch(), folders, blocks=None,
                                            hessian=False, progress=False, out=csv)
    assert sorted(again["step"].tolist()) == [4, 8, 12]  # step 8 once, now paired with step 12
    row8 = again[again["step"] == 8].iloc[0]
    assert np.isfinite(row8["fd_smoothness"]) and row8["next_checkpoint"].endswith("checkpoint-12")
    assert smoothness.read_table(csv)["step"].tolist() == again["step"].tolist()
