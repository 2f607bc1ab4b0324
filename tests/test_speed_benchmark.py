"""Smoke test of the speed benchmark (benchmarks/speed/): a tiny model, three steps, no timing."""

import json
import pathlib

import matplotlib.image
import pytest

from benchmarks import speed
from benchmarks.speed import breakdown, plots
from benchmarks.speed import hlo as speed_hlo


def test_plan_interleaves_chunks_without_straddling_the_start_phase():
    plan = speed.Plan(warmup=2, steps=25, start_steps=7, chunk=5)
    assert plan.chunks() == [(0, 5), (5, 7), (7, 12), (12, 17), (17, 22), (22, 25)]
    assert speed.steady_chunks(plan) == [(7, 12), (12, 17), (17, 22), (22, 25)]


def test_tiny_run_writes_results_with_one_compilation_per_variant(tmp_path, monkeypatch):
    # The benchmark sets XLA_FLAGS for itself; keep the test process's environment as it was.
    monkeypatch.setenv("XLA_FLAGS", "")
    results = speed.main(
        [
            "--models=tiny",
            "--variants=salsa",
            "--steps=3",
            "--start-steps=1",
            "--chunk=1",
            "--settle-steps=2",
            "--settled-steps=2",
            "--pipelined-steps=4",
            "--pipelined-chunk=2",
            "--horizon-steps=0",
            "--no-scaling",
            "--no-torch",
            "--pin=no",
            f"--out={tmp_path}",
            "--tag=tiny",
        ]
    )
    backend = results["environment"]["backend"]
    stem = tmp_path / f"speed_{backend}_tiny"
    written = json.loads(stem.with_suffix(".json").read_text())
    assert written["plan"] == {"warmup": 2, "steps": 3, "start_steps": 1, "chunk": 1}
    assert written["torch_skipped"] == "--no-torch given"
    for key in ("date", "command", "device", "cpu", "versions", "load_average_before"):
        assert key in written["environment"]

    model = written["models"]["tiny"]
    assert model["forward_ms"] > 0 and model["forward_over_forward_backward"] > 0
    assert set(model["variants"]) == {"adam", "salsa"}
    for name, variant in model["variants"].items():
        assert variant["compile_count"] == 1, name
        assert variant["recompiles_while_timing"] == 0, name
        steady = variant["wall"]["steady"]
        assert steady["steps"] == 2 and steady["step_ms"] > 0
        assert {"median", "p25", "p75"} <= set(steady["ratio"])
        assert steady["physical_limit"] >= 1.0
        assert variant["memory"]["opt_state_bytes"] > 0
    adam, salsa = model["variants"]["adam"], model["variants"]["salsa"]
    assert adam["wall"]["steady"]["ratio"]["median"] == pytest.approx(1.0)
    assert adam["wall"]["steady"]["evaluations_per_step"] == 0
    # SaLSa searches on each of its first steps (the schedule's warm-up): one trial or more.
    assert salsa["wall"]["start"]["searched_fraction"] == 1.0
    assert salsa["wall"]["start"]["evaluations_per_step"] >= 1
    # Adam's state, one copy of the initial parameters (multiplier_distance) and a few scalars
    # per parameter leaf (0.3 % of this tiny MLP's parameters).
    assert 1 <= salsa["memory"]["opt_state_extra_param_copies"] <= 1.01

    # The settled regime: salsa() timed beside Adam after untimed steps of its own.
    settled = model["settled"]
    assert (settled["first_step"], settled["last_step"]) == (5, 6)
    assert settled["wall"]["steady"]["steps"] == 2 and settled["wall"]["steady"]["ratio"]

    # Steps queued back to back: after the same 2 settling steps (and one more each, which
    # compiles and warms it up), two runs of 2 steps of each variant.
    pipelined = model["pipelined"]
    assert (pipelined["salsa_first_step"], pipelined["salsa_last_step"]) == (5, 8)
    assert pipelined["adam"]["step_ms"] > 0 and "ratio" not in pipelined["adam"]
    for name in ("salsa_skipped", "salsa"):
        assert pipelined[name]["step_ms"] > 0 and pipelined[name]["ratio"]["median"] > 0

    table = stem.with_suffix(".md").read_text()
    assert "| salsa() |" in table and "### Warm-up, settled regime and skipped step" in table
    assert "### Steps queued back to back" in table
    assert pathlib.Path(f"{stem}_overhead.png").stat().st_size > 0

    # The tables of a results file are written again from it alone, with the same text.
    stem.with_suffix(".md").unlink()
    assert speed.main(["--from-json", str(stem.with_suffix(".json")), "--no-plots"]) == written
    assert stem.with_suffix(".md").read_text() == table


def test_longer_run_is_plotted_without_the_scaling_sweep(tmp_path):
    """--no-scaling with a longer run: one panel, the longer run's (the sweep's data are absent
    and were once log-scaled empty axes)."""
    windows = [
        {"last_step": step, "wall_ratio_of_means": 1.1, "searched_fraction": 0.2}
        for step in (100, 1000)
    ]
    results = {"horizon": {"windows": windows}, "environment": {"backend": "cpu"}}
    path = plots.plot_scaling(results, tmp_path / "scaling.png")
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (5 * 120, 4 * 120)  # one 5 x 4 inch panel at 120 dpi


_HLO = """HloModule m

%skip (p: (f32[])) -> (f32[]) {
  %p = (f32[]) parameter(0)
  %a = f32[] get-tuple-element(%p), index=0
  %c = f32[] copy(%a)
  ROOT %t = (f32[]) tuple(%c)
}

%search (p: (f32[])) -> (f32[]) {
  %p = (f32[]) parameter(0)
  %b = f32[64,64]{1,0} fusion(%p), kind=kLoop, calls=%x
  ROOT %t = (f32[]) tuple(%b)
}

ENTRY %main (x: f32[64,64]) -> f32[64,64] {
  %x = f32[64,64]{1,0} parameter(0)
  %f = f32[64,64]{1,0} fusion(%x), kind=kLoop, calls=%y
  %s = f32[] fusion(%x), kind=kLoop, calls=%z
  %k = (f32[]) conditional(%i, %o, %o), branch_computations={%skip, %search, %search}
  ROOT %r = f32[64,64]{1,0} copy(%f)
}
"""


def test_hlo_counts_follow_the_skipped_branch():
    lines = speed_hlo.executed(_HLO)
    assert any("copy(%a)" in line for line in lines)  # the first branch: skip
    assert not any("calls=%x" in line for line in lines)
    counts = speed_hlo.count_kernels(lines, leaf_size=64 * 64)
    assert counts == {
        "parameter-sized": 1,
        "smaller": 1,
        "parameter-sized copies": 1,
        "smaller copies": 1,
        "control flow": 1,
    }


def test_hlo_profile_of_a_tiny_model_writes_its_table(tmp_path):
    rows = speed_hlo.main(
        ["--models=tiny", "--variants=adam,salsa_skipped", "--batch-size=4", f"--out={tmp_path}"]
    )
    adam, skipped = rows
    # The loops of the transform's search and of the finiteness check's fallback for a sum that
    # overflows (each runs its body at most once).
    assert adam["control flow"] == 0 and skipped["control flow"] == 2
    assert skipped["state_arrays"] > adam["state_arrays"]
    table = [line for line in (tmp_path / "speed_hlo_cpu.md").read_text().splitlines()
             if line.startswith("| ") and "variant" not in line]  # fmt: skip
    assert len(table) == 2 and "salsa(), skipped steps only" in table[1]


def test_breakdown_splits_a_skipped_steps_excess_into_items_and_writes_its_table(tmp_path):
    (row,) = breakdown.main(
        ["--models=tiny", "--rounds=2", "--chunk=1", "--pin=no", f"--out={tmp_path}"]
    )
    assert sum(row["items_ms"].values()) == pytest.approx(row["excess_ms"])
    leaves = row["state_leaves"]
    assert leaves["adam/flat"] == leaves["adam/nnx"] < leaves["salsa_skipped/nnx"]
    assert all(ms > 0 for ms in row["ms_per_step"].values())
    table = [line for line in (tmp_path / "speed_breakdown_cpu.md").read_text().splitlines()
             if line.startswith("| MLP")]  # fmt: skip
    assert len(table) == 1


def test_breakdowns_finiteness_guard_zeroes_the_updates_unless_all_is_finite():
    import jax.numpy as jnp

    guard = breakdown.finiteness_guard()
    updates = {"w": jnp.array([1.0, 2.0])}
    kept, _ = guard.update(updates, guard.init(updates), value=jnp.float32(1), grad=updates)
    assert kept["w"].tolist() == [1.0, 2.0]
    bad = {"w": jnp.array([1.0, jnp.nan])}
    zeroed, _ = guard.update(updates, guard.init(updates), value=jnp.float32(1), grad=bad)
    assert zeroed["w"].tolist() == [0.0, 0.0]
    zeroed, _ = guard.update(updates, guard.init(updates), value=jnp.float32(jnp.inf), grad=updates)
    assert zeroed["w"].tolist() == [0.0, 0.0]


def test_kernel_summary_counts_only_device_events_per_step():
    from benchmarks.speed import kernels

    trace = {
        "traceEvents": [
            {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
            {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
            *[{"ph": "X", "pid": 1, "name": "reduce", "dur": 2.0} for _ in range(6)],
            *[{"ph": "X", "pid": 1, "name": "gemm", "dur": 10.0} for _ in range(2)],
            {"ph": "X", "pid": 2, "name": "host work", "dur": 100.0},
            {"ph": "i", "pid": 1, "name": "a marker"},
        ]
    }
    summary = kernels.kernel_summary(kernels.device_events(trace), steps=2, top=1)
    assert summary["launches_per_step"] == 4
    assert summary["device_us_per_step"] == (6 * 2.0 + 2 * 10.0) / 2
    assert summary["top"] == [{"name": "gemm", "count_per_step": 1.0, "us_per_step": 10.0}]


def test_kernels_of_a_cpu_trace_are_its_thunks_without_the_loops_that_hold_others():
    from benchmarks.speed import kernels

    def thunk(name, ts, dur, tid=7):
        args = {"hlo_op": name, "hlo_module": "jit_train_step"}
        return {"ph": "X", "pid": 1, "tid": tid, "name": name, "ts": ts, "dur": dur, "args": args}

    trace = {
        "traceEvents": [
            {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
            {"ph": "X", "pid": 1, "tid": 3, "name": "PjitFunction(step)", "ts": 0, "dur": 90},
            thunk("fusion", 0, 10),
            thunk("while.3", 10, 50),  # its body: the two kernels it spans
            thunk("dot", 10, 30),
            thunk("copy", 40, 20),
            thunk("fusion", 60, 10),
            thunk("fusion", 5, 2, tid=8),  # another thread's
            {"ph": "X", "pid": 1, "tid": 7, "name": "end: dot", "ts": 40, "dur": 0},
        ]
    }
    assert kernels.device_events(trace) == []
    events = kernels.kernel_events(trace)
    assert sorted((e["name"], e["ts"]) for e in events) == [
        ("copy", 40),
        ("dot", 10),
        ("fusion", 0),
        ("fusion", 5),
        ("fusion", 60),
    ]
    summary = kernels.kernel_summary(events, steps=1, top=1)
    assert summary["device_us_per_step"] == 10 + 30 + 20 + 10 + 2


def test_results_name_the_commit_given_for_a_copy_of_the_checkout(monkeypatch):
    from benchmarks import provenance

    monkeypatch.delenv("BENCHMARK_COMMIT", raising=False)
    assert provenance.git_description() != "abc1234"
    monkeypatch.setenv("BENCHMARK_COMMIT", "abc1234")
    assert provenance.git_description() == "abc1234"
