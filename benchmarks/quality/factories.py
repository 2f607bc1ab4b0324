"""Optimizers that optax has under no single name, built for the registry."""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

SEARCHED_STEP = {
    "step_multiplier": 1.0,
    "multiplier_distance": None,
    "multiplier_noise": None,
    "rescale_distance": None,
}
"""``salsa()``'s default before 0.3: every step takes the search's step size, every skipped step
the rescaled one. The study's wrappers and registry entries built on that default keep it, so
their committed results hold."""


def salsa_searched_step(**kwargs):
    """``salsa_optax.salsa`` as it was before 0.3 (:data:`SEARCHED_STEP`), ``kwargs`` on top."""
    import salsa_optax

    return salsa_optax.salsa(**{**SEARCHED_STEP, **kwargs})


def adam_backtracking_linesearch(
    learning_rate: float = 1.0, b1=0.9, b2=0.999, eps=1e-8, max_backtracking_steps=15, **search
):
    """optax's backtracking (Armijo) line search along the Adam direction, optax's defaults."""
    return optax.chain(
        optax.adam(learning_rate, b1=b1, b2=b2, eps=eps),
        optax.scale_by_backtracking_linesearch(max_backtracking_steps, **search),
    )


def mechanized_adam(learning_rate: float = 1e-3, **kwargs):
    """``optax.contrib.mechanize`` around Adam; mechanize learns the scale of the base updates."""
    return optax.contrib.mechanize(optax.adam(learning_rate), **kwargs)


def eg_adam(learning_rate: float = 1e-3, **kwargs):
    """Exponentiated-gradient step-size adaptation (Amid et al., 2022) after Adam."""
    import salsa_optax

    return optax.chain(optax.adam(learning_rate), salsa_optax.scale_by_eg_step_size(**kwargs))


def adam_linear_decay(learning_rate: float, total_steps: int, warmup_fraction: float = 0.0):
    """Adam with linear decay to zero: schedule refinement's baseline (Defazio et al., 2023)."""
    import salsa_optax

    schedule = salsa_optax.linear_decay_schedule(
        learning_rate, total_steps, warmup_steps=int(warmup_fraction * total_steps)
    )
    return optax.adam(schedule)


def refined_adam(learning_rate: float, total_steps: int, prior: Mapping[str, np.ndarray]):
    """Adam on the schedule refined (Defazio et al., 2023) from a prior run's ℓ1 gradient norms."""
    import salsa_optax

    table = salsa_optax.refine_schedule(prior["grad_l1"], ord=1)
    return optax.adam(salsa_optax.refined_schedule(learning_rate, table, total_steps))


def linearly_decayed(factory: Callable[..., Any], total_steps: int, **kwargs):
    """``factory(**kwargs)`` with every update multiplied by a linear decay to zero.

    The same schedule knowledge for every optimizer: for a line search it scales the searched
    step, for Adam or Prodigy it is their learning rate times the decay.
    """
    import salsa_optax

    decay = salsa_optax.linear_decay_schedule(1.0, total_steps)
    return optax.chain(factory(**kwargs), optax.scale_by_schedule(decay))


def salsa_linear(total_steps: int, **kwargs):
    """``salsa_optax.salsa`` with its searched step multiplied by a linear decay to zero."""
    return linearly_decayed(salsa_searched_step, total_steps, **kwargs)


def prodigy_linear(total_steps: int, **kwargs):
    """``optax.contrib.prodigy`` with a linear decay to zero (its learning rate times it)."""
    return linearly_decayed(optax.contrib.prodigy, total_steps, **kwargs)


def dadapt_linear(total_steps: int, **kwargs):
    """``optax.contrib.dadapt_adamw`` with a linear decay to zero."""
    return linearly_decayed(optax.contrib.dadapt_adamw, total_steps, **kwargs)


class ScaledState(NamedTuple):
    """State of a :func:`salsa_scaled_by` optimizer: ``salsa()``'s own and the rule's memory."""

    inner: Any
    memory: jax.Array


def salsa_scaled_by(rule, initial_memory: jax.Array, **kwargs):
    """``salsa_optax.salsa`` whose every update is multiplied by a factor read from its info.

    ``rule(info, memory) -> (factor, memory)`` is called after each step with ``salsa()``'s
    :class:`salsa_optax.SalsaInfo` and a scalar it keeps between steps (``initial_memory`` at
    the start, kept in its dtype).
    """

    inner = salsa_searched_step(**kwargs)

    def init(params):
        return ScaledState(inner.init(params), initial_memory)

    def update(updates, state, params=None, **extra):
        new_updates, inner_state = inner.update(updates, state.inner, params, **extra)
        factor, memory = rule(inner_state.info, state.memory)
        new_state = ScaledState(inner_state, memory.astype(state.memory.dtype))
        return optax.tree.scale(factor, new_updates), new_state

    return optax.GradientTransformationExtraArgs(init, update)


def salsa_margin_scaled(rule: str, smoothing: float = 0.9, **kwargs):
    """``salsa_optax.salsa`` whose steps are multiplied according to its Armijo margin.

    The margin ``m`` of each search whose first trial passed (a search that backtracked counts 0,
    values above 1 count 1) is averaged over searches with ``smoothing``. With ``c = 0.5`` and a
    quadratic model, a step passing with margin ``m`` is ``1 - m`` times the line minimum, and
    twice the step decreases the loss more than the step while ``m > 1/3``. ``rule``:
    ``"gate"`` multiplies by 2 while the average exceeds 1/3; ``"line_min"`` by
    ``min(2, 1 / (1 - m))``, a step to the line minimum the average implies.
    """
    if rule not in ("gate", "line_min"):
        raise ValueError(f"rule must be 'gate' or 'line_min', not {rule!r}")

    def by_margin(info, average):
        first = info.searched & (info.num_evaluations == 1) & jnp.isfinite(info.armijo_margin)
        margin = jnp.where(first, jnp.minimum(info.armijo_margin, 1.0), 0.0)
        average = jnp.where(
            info.searched, smoothing * average + (1 - smoothing) * margin, average
        ).astype(jnp.float32)
        if rule == "gate":
            return jnp.where(average > 1 / 3, 2.0, 1.0), average
        return jnp.clip(1.0 / jnp.maximum(1.0 - average, 1e-3), 1.0, 2.0), average

    return salsa_scaled_by(by_margin, jnp.zeros((), jnp.float32), **kwargs)


def salsa_settled_scaled(multiplier: float = 2.0, streak: int = 10, **kwargs):
    """``salsa_optax.salsa`` whose steps are ``multiplier`` times longer once its step size settled.

    Settled: the last ``streak`` searches each accepted their first trial. A search that
    backtracks (or ends in any other way) resets the count, and the steps are the search's own
    again until ``streak`` clean searches follow. Skipped steps leave the count as it is.
    """

    def by_streak(info, count):
        clean = (info.search_outcome == 1) & (info.num_backtracks == 0)
        count = jnp.where(info.searched, jnp.where(clean, count + 1, 0), count)
        return jnp.where(count >= streak, multiplier, 1.0), count

    return salsa_scaled_by(by_streak, jnp.zeros((), jnp.int32), **kwargs)


def _size_weighted_mean(factors: Any, params: Any) -> jax.Array:
    """The mean of per-leaf scalar ``factors`` weighted by each leaf's size in ``params``."""
    sizes = [w.size for w in jax.tree.leaves(params)]
    return sum(f * n for f, n in zip(jax.tree.leaves(factors), sizes, strict=True)) / sum(sizes)


class DistanceScaledState(NamedTuple):
    """State of :func:`salsa_distance_scaled`: ``salsa()``'s own, the initial parameters, and the
    size-weighted mean multiplier of the last step (``step_multiplier``, for the step logs)."""

    inner: Any
    initial_params: Any
    step_multiplier: jax.Array


def salsa_distance_scaled(multiplier: float = 2.0, distance: float = 1.0, **kwargs):
    """``salsa_optax.salsa`` whose steps are longer on the parameters that moved far from the start.

    Each parameter leaf ``l`` moves ``1 + (multiplier - 1) * min(1, r_l / distance)`` times the
    accepted step, ``r_l = ||w_l - w0_l|| / ||w0_l||`` its distance from its initial value relative
    to that value's norm (a leaf that started at zero counts as far). Fine-tuned weights stay near
    their pretrained values and keep the search's step; weights trained from scratch soon move by
    their initial norm and take ``multiplier`` times it.
    """

    inner = salsa_searched_step(**kwargs)

    def init(params):
        return DistanceScaledState(
            inner.init(params), jax.tree.map(jnp.copy, params), jnp.ones((), jnp.float32)
        )

    def update(updates, state, params=None, **extra):
        new_updates, inner_state = inner.update(updates, state.inner, params, **extra)

        def factor(w, w0):
            moved = jnp.linalg.norm((w - w0).ravel())
            start = jnp.linalg.norm(w0.ravel())
            ratio = jnp.where(start > 0, moved / jnp.where(start > 0, start, 1.0), jnp.inf)
            return 1.0 + (multiplier - 1.0) * jnp.minimum(1.0, ratio / distance)

        factors = jax.tree.map(factor, params, state.initial_params)
        mean = _size_weighted_mean(factors, params)
        scaled = jax.tree.map(lambda u, f: (u * f).astype(u.dtype), new_updates, factors)
        return scaled, DistanceScaledState(
            inner_state, state.initial_params, mean.astype(jnp.float32)
        )

    return optax.GradientTransformationExtraArgs(init, update)


class OvershootState(NamedTuple):
    """State of :func:`salsa_overshoot`: ``salsa()``'s own, the last update, the per-leaf share
    ``kappa`` of the multiplier's excess, and their size-weighted mean (``step_multiplier``)."""

    inner: Any
    last_update: Any
    kappa: Any
    step_multiplier: jax.Array


def salsa_overshoot(rate: float = 0.1, **kwargs):
    """``salsa(step_multiplier=2.0, multiplier_distance=0.25)`` whose multiplier excess shrinks
    while its steps overshoot.

    Per leaf, ``s = cos(g_t, -u_{t-1})``: positive while the new gradient still descends along
    the last update (the step fell short of the line minimum), negative past it. ``kappa`` moves
    by ``rate * s`` within [0, 1] and the leaf takes ``1 + (mu - 1) * kappa`` instead of ``mu``.
    """

    inner = salsa_searched_step(**{"step_multiplier": 2.0, "multiplier_distance": 0.25, **kwargs})

    def init(params):
        kappa = jax.tree.map(lambda _: jnp.ones((), jnp.float32), params)
        return OvershootState(
            inner.init(params), optax.tree.zeros_like(params), kappa, jnp.ones((), jnp.float32)
        )

    def update(updates, state, params=None, **extra):
        new_updates, inner_state = inner.update(updates, state.inner, params, **extra)

        def cos(g, u):
            dot = -jnp.vdot(g, u)
            norms = jnp.linalg.norm(g.ravel()) * jnp.linalg.norm(u.ravel())
            return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)

        kappa = jax.tree.map(
            lambda k, g, u: jnp.clip(k + rate * cos(g, u), 0.0, 1.0).astype(jnp.float32),
            state.kappa, updates, state.last_update,
        )  # fmt: skip
        mus = jax.tree.unflatten(jax.tree.structure(params), list(inner_state.distance.multipliers))
        factors = jax.tree.map(lambda mu, k: 1 + (mu - 1) * k, mus, kappa)
        scaled = jax.tree.map(
            lambda u, f, mu: (u * (f / mu)).astype(u.dtype), new_updates, factors, mus
        )
        mean = _size_weighted_mean(factors, params)
        return scaled, OvershootState(inner_state, scaled, kappa, mean.astype(jnp.float32))

    return optax.GradientTransformationExtraArgs(init, update)
