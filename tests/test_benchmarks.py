"""The benchmark scripts run (quick mode) and write the numbers they print."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stationary_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "stationary.json"
    assert load("stationary").main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "speed-up over the python loop" in printed
    for key in ("vectorized", "vectorized_one_snr", "python_loop"):
        assert result[key]["samples"] > 0 and result[key]["samples_per_s"] > 0
    assert result["speedup_over_loop"] == pytest.approx(
        result["vectorized"]["samples_per_s"] / result["python_loop"]["samples_per_s"])
    assert result["grid"]["betas"] == 8 and result["grid"]["chains"] == 2000


def test_smoothness_probe_benchmark_quick(tmp_path, capsys):
    pytest.importorskip("pyhessian", reason="PyHessian is the peer; it comes with the [dev] extra")
    out = tmp_path / "probe.json"
    assert load("smoothness_probe").main(["--quick", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "speed-up over PyHessian" in capsys.readouterr().out
    dense, lanczos = result["comparisons"]
    assert dense["reference_kind"] == "dense eigvalsh"
    for row in (dense, lanczos):
        for engine in ("jvp", "graph"):
            ours = row[f"ours_{engine}"]
            assert ours["converged"] and ours["rel_error"] <= 1e-3 and ours["n_hvp"] > 0
            assert row[f"speedup_{engine}"] == pytest.approx(row["pyhessian"]["seconds"] / ours["seconds"])
        assert row["pyhessian_reached_target"] and row["pyhessian"]["n_hvp"] > 0
    assert dense["curvlinops"]["rel_error"] <= 1e-3 and dense["curvlinops"]["n_hvp"] > 0  # no LayerNorm: it agrees
    cost = result["transformer_cost"]
    for engine in ("jvp", "graph"):
        assert 0 < cost[f"fd_probe_{engine}_gradients"] <= cost["n_gamma"] + 1 and cost[f"fd_probe_{engine}_hvps"] == 1
    assert cost["spectral_graph"]["converged"] and cost["hvp_curvlinops_s"] > 0
    # the LayerNorm weight's rows are where curvlinops and torch.func.hessian go wrong, and only there
    for name in ("curvlinops", "torch.func.hessian"):
        errors = result["layernorm"][name]["rel_error_by_tensor"]
        assert errors.pop("1.weight") > 1e-2 and max(errors.values()) < 1e-12
    product = lanczos["curvlinops_product"]
    assert product["max_rel_error_layernorm"] > 1e-3 and product["max_rel_error_other"] < 1e-10
    warm = result["warm_start"]
    assert warm["all_converged"] and warm["products_cold"] > 0 and warm["products_warm"] > 0
    assert warm["max_rel_difference"] < 1e-2


def test_gpu_check_says_when_there_is_no_gpu_and_runs_its_paths_under_the_interpreter(tmp_path, capsys, monkeypatch):
    pytest.importorskip("triton", reason="the Triton kernel comes with the [triton] extra")
    import torch

    gpu_check = load("gpu_check")
    if not torch.cuda.is_available():
        assert gpu_check.main(["--out", str(tmp_path / "none.json")]) == 2
        assert "CUDA is not available" in capsys.readouterr().out and not (tmp_path / "none.json").exists()
    import adams.optimizer

    fused = adams.optimizer._fused
    monkeypatch.setattr(fused, "kernel_or_none", fused.kernel_or_none)  # --interpret replaces it: restore after
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--interpret", "--no-parity", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "AdamS default path: triton" in printed and "not a GPU's" in printed
    for timing in result["timings"].values():
        assert set(timing["optimizers"]) == {"adams_fused", "adams_compiled", "adams_foreach", "adamw_fused",
                                             "adamw_foreach", "sgd_foreach"}
        assert set(timing["ratios"]) == {"adams_fused/adamw_fused", "adams_fused/sgd_foreach",
                                         "adams_compiled/adams_fused"}


def test_gpu_check_chooses_the_single_pass_from_the_interval():
    choice = load("gpu_check").choice_verdict
    assert choice({"ci_low": 0.7, "ci_high": 0.9}).startswith("torch.compile's step is faster")
    assert choice({"ci_low": 1.1, "ci_high": 1.3}).startswith("the Triton kernel is faster")
    assert choice({"ci_low": 0.9, "ci_high": 1.1}).startswith("no difference resolved")
