"""Smoke test of the quality benchmark's machinery: a 2-step grid on the digits task."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from benchmarks import quality
from benchmarks.quality import context, harness, reuse
from benchmarks.tasks import base


def test_two_step_grid_writes_json_and_table(tmp_path):
    results = quality.main([
        "--tasks", "digits_mlp",
        "--optimizers", "prodigy,adam_linesearch,salsa",
        "--extra-optimizer", "salsa_c01=salsa:slope_rtol=0.1,smoothing=0.99",
        "--extra-optimizer", "adam_pair=adam:learning_rate=[1e-3,1e-2]",
        "--seeds", "0,1",
        "--steps", "2",
        "--out", str(tmp_path),
        "--tag", "smoke",
    ])  # fmt: skip
    with open(tmp_path / "quality_smoke.json") as f:
        saved = json.load(f)
    names = ["prodigy", "adam_linesearch", "salsa", "salsa_c01", "adam_pair"]
    ran = [n for n in names if n not in saved["skipped"]]
    assert {"prodigy", "adam_linesearch", "adam_pair"} <= set(ran)

    runs = saved["runs"]
    assert len(runs) == 2 * (len(ran) + 1)  # two seeds; adam_pair has two members
    for run in runs:
        assert run["steps_done"] == 2
        assert run["grad_evals"] == 2
        assert run["passes"] == 2 + run["value_evals"]
        assert run["curve"]["step"] == [1, 2]
        assert run["seed"] in (0, 1)
    line_search = [r for r in runs if r["optimizer"] == "adam_linesearch"]
    assert all(r["value_evals"] >= 2 for r in line_search)  # at least one trial per step

    rows = saved["summary"]["tasks"]["digits_mlp"]
    assert set(rows) == set(ran)
    assert rows["adam_pair"]["grid_size"] == 2
    assert rows["adam_pair"]["member"] in ("learning_rate=0.001", "learning_rate=0.01")
    assert rows["adam_pair"]["seeds"] == 2
    assert sorted(row["rank"] for row in rows.values()) == list(range(1, len(ran) + 1))
    assert saved["summary"]["cost"]["adam_pair"]["runs"] == 2
    assert saved["summary"]["cost"]["prodigy"]["runs"] == 1
    assert results["summary"] == saved["summary"]

    table = (tmp_path / "quality_smoke.md").read_text()
    assert "## digits_mlp" in table and "## Across tasks" in table
    for name in ran:
        assert f"| {name} |" in table
    assert (tmp_path / "quality_smoke_steps.npz").exists()
    for figure in ("loss", "step_size"):
        assert (tmp_path / f"quality_smoke_digits_mlp_{figure}.png").stat().st_size > 0


def test_reuse_takes_identical_runs_instead_of_training(tmp_path, monkeypatch):
    args = ["--tasks", "digits_mlp", "--optimizers", "prodigy", "--seeds", "0",
            "--steps", "digits_mlp=2", "--out", str(tmp_path), "--no-plots"]  # fmt: skip
    first = quality.main([*args, "--tag", "first"])
    assert first["runs"][0]["steps_done"] == 2
    monkeypatch.setattr(harness, "train_run", pytest.fail)
    again = quality.main([*args, "--tag", "again", "--reuse", str(tmp_path / "quality_first.json")])
    assert again["runs"][0]["test_metric"] == first["runs"][0]["test_metric"]


def test_extra_optimizer_parsing():
    name, entry = quality.parse_extra_optimizer(
        "s=salsa:slope_rtol=0.1,smoothing=0.99,variant=sps", quality.OPTIMIZERS
    )
    assert name == "s" and entry.factory == "salsa_optax:salsa"
    assert dict(entry.kwargs) == {"slope_rtol": 0.1, "smoothing": 0.99, "variant": "sps"}
    _, entry = quality.parse_extra_optimizer("a=adam:learning_rate=3e-3", quality.OPTIMIZERS)
    assert dict(entry.grid) == {} and entry.kwargs["learning_rate"] == 3e-3
    members = quality.grid_members(quality.OPTIMIZERS["adam"])
    assert [kwargs["learning_rate"] for _, kwargs in members] == list(quality.ADAM_GRID)
    with pytest.raises(ValueError, match="unknown base"):
        quality.parse_extra_optimizer("x=nope:a=1", quality.OPTIMIZERS)
    assert quality.select_optimizers("group:tuned", quality.OPTIMIZERS) == ["adam", "adamw", "sgdm"]


def test_reuse_only_reports_what_it_finds_and_trains_only_reruns(tmp_path, monkeypatch):
    base = ["--tasks", "digits_mlp", "--steps", "2", "--out", str(tmp_path), "--no-plots"]
    quality.main([*base, "--optimizers", "prodigy", "--seeds", "0", "--tag", "first"])
    trained = []
    real_train_run = harness.train_run
    monkeypatch.setattr(
        harness,
        "train_run",
        lambda ctx, compiled_as, *a: (
            trained.append(compiled_as[0]) or real_train_run(ctx, compiled_as, *a)
        ),
    )
    report = quality.main([
        *base, "--optimizers", "prodigy,salsa", "--seeds", "0,1", "--tag", "report",
        "--reuse", str(tmp_path / "quality_first.json"), "--reuse-only", "--rerun", "salsa",
    ])  # fmt: skip
    assert trained == ["salsa", "salsa"]  # prodigy's seed 1 is missing and not trained
    rows = report["summary"]["tasks"]["digits_mlp"]
    assert rows["prodigy"]["seeds"] == 1 and rows["salsa"]["seeds"] == 2
    assert "(1 of 2 seeds)" in (tmp_path / "quality_report.md").read_text()


class _Normed(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)

    def __call__(self, x, train):
        return self.norm(self.linear(x), use_running_average=not train)


def _task(make_model):
    loss = lambda model, batch, key: model(batch["x"], train=True).mean()
    return base.Task("normed", "", None, make_model, loss, None, "accuracy", True, {})


def test_recalibration_sets_batchnorm_statistics_to_the_batches_mean_at_the_final_weights():
    task = _task(_Normed)
    recalibrate = context.make_recalibrate_fn(task)
    graphdef, params, rest = context.split_model(task, 0)
    x = jax.random.normal(jax.random.key(1), (2, 8, 3))  # two batches of 8
    new_rest = recalibrate(params, rest, {"x": x})

    model = nnx.merge(graphdef, params, rest)
    features = np.asarray(x @ model.linear.kernel[...] + model.linear.bias[...])
    recalibrated = nnx.merge(graphdef, params, new_rest).norm
    np.testing.assert_allclose(recalibrated.mean[...], features.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(recalibrated.var[...], features.var(1).mean(0), rtol=1e-5)
    assert recalibrated.momentum == 0.9  # the model the evaluation builds keeps its own


def test_recalibration_is_none_without_batchnorm():
    task = _task(lambda rngs: nnx.Linear(3, 4, rngs=rngs))
    assert context.make_recalibrate_fn(task) is None


def test_a_recalibrated_run_has_its_own_key():
    args = ("fashion_resnet", "salsa", "", {}, 0, 10, 64)
    assert reuse.run_key(*args) == reuse.run_key(*args, 0)
    assert reuse.run_key(*args) != reuse.run_key(*args, 50)
