"""The optimizer state survives a checkpoint: resuming gives bit-identical training."""

import jax
import numpy as np
import orbax.checkpoint as ocp
from objectives import OBJECTIVES, make_train_step

import salsa_optax

MLP = OBJECTIVES[3]


def test_resume_from_orbax_checkpoint_is_bit_identical(tmp_path):
    tx = salsa_optax.salsa(weight_decay=1e-4)
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(13):  # stop between searches, with a skipped step pending
        params, state, _ = step(params, state)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": state})
    restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    assert type(restored["opt_state"]) is type(state)

    resumed_params, resumed_state = restored["params"], restored["opt_state"]
    for _ in range(12):
        params, state, _ = step(params, state)
        resumed_params, resumed_state, _ = step(resumed_params, resumed_state)
    jax.tree.map(np.testing.assert_array_equal, resumed_params, params)
    jax.tree.map(np.testing.assert_array_equal, resumed_state, state)
