"""What a compiled SaLSa step costs beyond an Adam step, read off its state and its HLO.

The speed benchmark times steps; these tests pin the structure that keeps a step cheap on every
backend, where each array of the state and each kernel of the step has a fixed cost: the state
holds a fixed number of arrays besides its parameter-shaped ones, whatever the number of
parameter leaves, and a donated step writes its parameter-shaped outputs in place, without
copying any parameter-shaped buffer.
"""

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import salsa_optax


def _params(num_layers):
    shapes = [(12, 5), (5,)] * num_layers  # sizes apart from the number of leaves
    return {f"leaf{i}": jnp.ones(shape) / (i + 1) for i, shape in enumerate(shapes)}


def _value_fn(params):
    return sum(jnp.sum(jnp.square(x - 0.5)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "make_tx", [salsa_optax.salsa, salsa_optax.salsa_published, salsa_optax.salsa_sgd]
)
def test_the_state_has_a_fixed_number_of_arrays_beyond_its_parameter_shaped_ones(make_tx):
    def counts(num_layers):
        params = _params(num_layers)
        leaves = jax.tree.leaves(make_tx().init(params))
        shapes = {x.shape for x in jax.tree.leaves(params)}
        shaped = sum(1 for x in leaves if x.shape in shapes and x.ndim > 0)
        return shaped, len(leaves) - shaped

    (shaped_1, others_1), (shaped_4, others_4) = counts(1), counts(4)
    assert others_1 == others_4  # per-leaf quantities are one vector each
    assert shaped_4 == 4 * shaped_1  # Adam's moments (and salsa()'s initial parameters)


@pytest.mark.parametrize("make_tx", [salsa_optax.salsa, salsa_optax.salsa_published])
def test_a_donated_step_copies_no_parameter_shaped_buffer(make_tx):
    """The moments are read once, after they are written (as in optax.adam); a step that read
    the old moments after writing the new ones in place would need copies of them first."""
    tx = make_tx()
    params = _params(2)

    def step(params, state):
        value, grad = jax.value_and_grad(_value_fn)(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=_value_fn)
        return optax.apply_updates(params, updates), state

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params)).compile()
    entry = compiled.as_text().split("\nENTRY ", 1)[1].split("\n}\n", 1)[0]
    copies = re.findall(r"= (\w+\[[\d,]*\])\S* copy\(", entry)
    assert copies, "no copy at all: the pattern no longer reads this HLO"
    assert not [shape for shape in copies if shape in ("f32[12,5]", "f32[5]")], copies
