"""Optimizers that optax has under no single name, built for the registry."""

from collections.abc import Mapping

import numpy as np
import optax


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
    """Exponentiated-gradient step-size adaptation (Amid et al., 2022) around Adam."""
    import salsa_optax

    return salsa_optax.scale_by_eg_step_size(inner=optax.adam(learning_rate), **kwargs)


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
