"""The optimizers' public surface: names in messages, documented defaults, and how presets are
built from a base optimizer."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import salsa_optax
from salsa_optax._src import alias, armijo


def _base(a, b=2, *, c=3, d=4):
    return ("built", a, b, c, d)


def test_a_preset_has_the_base_signature_with_its_defaults_and_without_fixed_arguments():
    preset = alias._preset(_base, "mine", "Doc.", {"b": 20}, fixed={"d": 40})
    keyword = inspect.Parameter.KEYWORD_ONLY
    expected = inspect.Signature(
        [
            inspect.Parameter("a", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("b", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=20),
            inspect.Parameter("c", keyword, default=3),
        ],
        return_annotation=optax.GradientTransformationExtraArgs,
    )
    assert inspect.signature(preset) == expected
    assert (preset.__name__, preset.__qualname__, preset.__doc__) == ("mine", "mine", "Doc.")
    assert preset.__module__ == alias.__name__


def test_a_preset_passes_positional_keyword_default_and_fixed_arguments():
    preset = alias._preset(_base, "mine", "", {"b": 20}, fixed={"d": 40})
    assert preset(1) == ("built", 1, 20, 3, 40)
    assert preset(1, 5, c=6) == ("built", 1, 5, 6, 40)
    with pytest.raises(TypeError):
        preset(1, d=7)


def test_a_preset_without_fixed_arguments_keeps_every_argument():
    preset = alias._preset(_base, "plain", "", {})
    assert list(inspect.signature(preset).parameters) == ["a", "b", "c", "d"]
    assert preset(1, d=9) == ("built", 1, 2, 3, 9)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (salsa_optax.salsa, "salsa"),
        (salsa_optax.salsa_sgd, "salsa_sgd"),
        (salsa_optax.scale_by_salsa, "scale_by_salsa"),
    ],
)
def test_errors_name_the_optimizer(factory, name):
    tx = factory()
    w = jnp.zeros(2)
    with pytest.raises(TypeError, match=rf"^{name}\.update is missing value_fn\. Call `{name}`"):
        tx.update(w, tx.init(w), w, value=jnp.float32(0.0), grad=w)


def test_salsa_defaults_are_the_documented_ones():
    """salsa() against its arguments written out as the docstring and README give them, on a
    loss that is negative (so a reference bypass would never search), over steps that use the
    momentum, the weight decay and eps."""
    target = jnp.array([1.0, -2.0, 0.5])
    loss = lambda w: jnp.sum((w - target) ** 2) - 10.0
    explicit = salsa_optax.salsa(
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        search_with_momentum=False,
        rescale_momentum=True,
        searched_step_along_momentum=False,
        reference_bypass=False,
    )

    def trajectory(tx):
        w, state, points = jnp.array([0.3, 0.2, -0.1]), tx.init(jnp.zeros(3)), []
        for _ in range(3):
            value, grad = jax.value_and_grad(loss)(w)
            updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=loss)
            assert int(state.info.search_outcome) == armijo.ACCEPTED
            w = w + updates
            points.append(w)
        return points

    for ours, documented in zip(trajectory(salsa_optax.salsa()), trajectory(explicit), strict=True):
        np.testing.assert_array_equal(ours, documented)
