"""The deterministic-multiplier benchmark: its table and its cells by value, at 3 steps."""

import json

import jax
import numpy as np
from objectives import OBJECTIVES, make_train_step

import salsa_optax
from benchmarks import deterministic_multipliers


def test_writes_one_cell_per_problem_and_multiplier_equal_to_a_direct_run(tmp_path):
    deterministic_multipliers.main(["--steps", "3", "--multipliers", "1,2", "--out", str(tmp_path)])
    with open(tmp_path / "deterministic_multipliers.json") as f:
        saved = json.load(f)
    assert set(saved["rows"]) == {
        "quadratic", "rosenbrock", "logistic", "mlp", "least_squares", "regularised_logistic"
    }  # fmt: skip
    assert all(set(cells) == {"1.0", "2.0", "salsa()"} for cells in saved["rows"].values())
    table = (tmp_path / "deterministic_multipliers.md").read_text()
    assert "| quadratic |" in table and "μ = 2" in table and "salsa()" in table

    quadratic = OBJECTIVES[0]
    for column in ("1.0", "2.0", "salsa()"):
        if column == "salsa()":
            tx = salsa_optax.salsa()
        else:
            tx = salsa_optax.salsa(
                step_multiplier=float(column), multiplier_distance=0.25, multiplier_noise=None
            )
        step = make_train_step(tx, quadratic)
        params, state = quadratic.params, tx.init(quadratic.params)
        for _ in range(3):
            params, state, _ = step(params, state)
        loss = float(quadratic.loss(params, quadratic.x, quadratic.y))
        np.testing.assert_allclose(saved["rows"]["quadratic"][column]["loss"], loss)
        grad = jax.grad(quadratic.loss)(params, quadratic.x, quadratic.y)
        np.testing.assert_allclose(
            saved["rows"]["quadratic"][column]["grad_norm"], np.linalg.norm(grad),
            rtol=1e-6,
        )  # fmt: skip
    # The gate's ratio of the last column, from salsa()'s state: closed on a deterministic loss.
    noise = state.noise
    ratio = float(np.sqrt(noise.residual_sq / noise.linear_sq))
    np.testing.assert_allclose(saved["rows"]["quadratic"]["salsa()"]["gate_ratio"], ratio)
    assert ratio < 0.05 and "noise gate" in table
