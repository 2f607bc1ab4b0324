"""The Flax NNX recipe (``examples/nnx_recipe.py``) trains, and the errors of its missed steps.

Each faulty step below is the recipe's ``train_step`` with one step of the recipe missed, as a
user following the Flax tutorial would write it; the test pins what the user then meets.
"""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import errors, nnx

import salsa_optax
from examples import nnx_recipe
from examples.common.train_step import TraceCounter


@pytest.fixture(scope="module")
def batch():
    train_data, _ = nnx_recipe.load_data()
    return {k: jnp.asarray(v[:32]) for k, v in train_data.items()}


def new_model_and_optimizer():
    model = nnx_recipe.CNN(rngs=nnx.Rngs(0))
    return model, nnx.Optimizer(model, salsa_optax.salsa(), wrt=nnx.Param)


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_recipe_trains_compiles_once_and_value_fn_agrees(capsys):
    traces = TraceCounter(nnx_recipe.train_step.fun)
    result = nnx_recipe.train(num_steps=40, step_fn=nnx.jit(traces))
    losses, totals = result["losses"], result["totals"]
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]
    assert result["accuracy"] > 0.3  # chance is 0.1
    assert traces.count == 1
    assert totals["total_searches"] > 0
    assert totals["total_value_mismatches"] == 0
    assert totals["total_exhausted"] == totals["total_nonfinite_skipped"] == 0
    assert "WARNING" not in capsys.readouterr().out


def test_value_fn_closing_over_an_rngs_raises_trace_context_error(batch):
    """(a) The tutorial's ``train_step(model, optimizer, rngs, batch)``, with a value_fn that
    draws its dropout key from that ``nnx.Rngs``: the probes run inside the line search's loop,
    where advancing the Rngs' counter (a Variable of the outer trace) is refused."""

    def loss_fn(model, rngs, batch):
        return cross_entropy(model(batch["image"], rngs=rngs), batch["label"])

    @nnx.jit
    def train_step(model, optimizer, rngs, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, rngs, batch)
        graphdef, _, rest = nnx.split(model, nnx.Param, ...)

        def value_fn(params, batch):
            return loss_fn(nnx.merge(graphdef, params, rest, copy=True), rngs, batch)

        optimizer.update(model, grads, value=loss, grad=grads, value_fn=value_fn, batch=batch)
        return loss

    model, optimizer = new_model_and_optimizer()
    with pytest.raises(errors.TraceContextError, match="Cannot mutate RngCount from a different"):
        train_step(model, optimizer, nnx.Rngs(dropout=1), batch)


def test_merge_without_copy_raises_trace_context_error(batch):
    """(b) ``nnx.merge(graphdef, params, rest)`` without ``copy=True``: BatchNorm in train mode
    writes its statistics into the Variables of ``rest``, which belong to the jit's trace."""

    @nnx.jit
    def train_step(model, optimizer, batch, key):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def value_fn(params, batch, key):
            trial = nnx.merge(graphdef, params, rest)  # missing copy=True
            return nnx_recipe.loss_fn(trial, batch, key), nnx.state(trial, nnx.BatchStat)

        (loss, stats), grads = jax.value_and_grad(value_fn, has_aux=True)(params, batch, key)
        optimizer.update(
            model, grads, value=loss, grad=grads, value_fn=value_fn, batch=batch, key=key
        )
        nnx.update(model, stats)
        return loss

    model, optimizer = new_model_and_optimizer()
    with pytest.raises(errors.TraceContextError, match="Cannot mutate BatchStat from a different"):
        train_step(model, optimizer, batch, jax.random.key(0))


def test_value_fn_with_another_dropout_key_is_counted_as_mismatches(monkeypatch, capsys):
    """(c) Probes with another dropout key than the gradient call: no error, but the search
    compares losses of two different functions. With the recipe's rate 0.1 this stays silent
    (no exhausted search in 300 steps, a slightly worse run); at rate 0.5 searches exhaust, each
    is counted in ``total_value_mismatches`` and training stalls."""

    class CNNWithHeavyDropout(nnx_recipe.CNN):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            self.dropout = nnx.Dropout(rate=0.5)

    monkeypatch.setattr(nnx_recipe, "CNN", CNNWithHeavyDropout)

    @nnx.jit
    def train_step(model, optimizer, batch, key):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def value_fn(params, batch, key):
            trial = nnx.merge(graphdef, params, rest, copy=True)
            return nnx_recipe.loss_fn(trial, batch, key), nnx.state(trial, nnx.BatchStat)

        def probe(params, batch, key):  # the mistake: another key than the gradient call's
            return value_fn(params, batch, jax.random.fold_in(key, 1))

        (loss, stats), grads = jax.value_and_grad(value_fn, has_aux=True)(params, batch, key)
        optimizer.update(model, grads, value=loss, grad=grads, value_fn=probe, batch=batch, key=key)
        nnx.update(model, stats)
        return loss

    totals = nnx_recipe.train(num_steps=30, step_fn=train_step)["totals"]
    assert totals["total_value_mismatches"] > 0
    assert totals["total_value_mismatches"] == totals["total_exhausted"]
    assert "value_fn disagreeing with the loss of the gradient call" in capsys.readouterr().out


def test_value_fn_returning_per_example_losses_raises_value_error(batch):
    """(d) A value_fn without ``.mean()``: the per-example losses are refused by name."""

    @nnx.jit
    def train_step(model, optimizer, batch, key):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def grad_fn(params, batch, key):
            trial = nnx.merge(graphdef, params, rest, copy=True)
            return nnx_recipe.loss_fn(trial, batch, key), nnx.state(trial, nnx.BatchStat)

        def value_fn(params, batch, key):
            trial = nnx.merge(graphdef, params, rest, copy=True)
            logits = trial(batch["image"], rngs=nnx.Rngs(dropout=key))
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])

        (loss, stats), grads = jax.value_and_grad(grad_fn, has_aux=True)(params, batch, key)
        optimizer.update(
            model, grads, value=loss, grad=grads, value_fn=value_fn, batch=batch, key=key
        )
        nnx.update(model, stats)
        return loss

    model, optimizer = new_model_and_optimizer()
    with pytest.raises(ValueError, match=r"value_fn of salsa must return a scalar loss, got shape"):
        train_step(model, optimizer, batch, jax.random.key(0))
