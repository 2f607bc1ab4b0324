"""What the benchmark compares: every optimizer by name, and the default selection.

Adding an optimizer is one entry in :data:`OPTIMIZERS` (a factory that optax or salsa_optax does
not export under one name goes in :mod:`benchmarks.quality.factories`).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import optax

from benchmarks.quality.factories import (
    adam_backtracking_linesearch,
    adam_linear_decay,
    dadapt_linear,
    eg_adam,
    mechanized_adam,
    prodigy_linear,
    refined_adam,
    salsa_distance_scaled,
    salsa_linear,
    salsa_margin_scaled,
    salsa_overshoot,
    salsa_searched_step,
    salsa_settled_scaled,
)


class Optimizer(NamedTuple):
    """A registry entry.

    Attributes:
      factory: ``"module:attribute"`` (imported when the optimizer runs, so entries may name
        methods that have not landed yet) or a callable returning a gradient transformation.
      kwargs: keyword arguments of the factory.
      grid: ``{keyword: values}``; every combination is one run, and the reported result is the
        member with the best mean validation metric.
      group: column for the tables and plots: ``salsa``, ``tuned``, ``line search``, ``lr-free``,
        ``related``.
      eval_params: ``"module:attribute"`` of ``(opt_state, params) -> params`` to evaluate at
        (schedule-free methods), or None for the parameters themselves.
      prior: name of an entry whose run (same task, seed and grid member) must come first; the
        factory then also receives ``prior=`` that run's per-step diagnostics (schedule
        refinement). A factory with a ``total_steps`` parameter receives the run's step budget.
    """

    factory: str | Callable[..., optax.GradientTransformation]
    kwargs: Mapping[str, Any] = {}
    grid: Mapping[str, Sequence[Any]] = {}
    group: str = ""
    eval_params: str | None = None
    prior: str | None = None


ADAM_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


SGD_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


OPTIMIZERS: dict[str, Optimizer] = {
    "salsa": Optimizer("salsa_optax:salsa", group="salsa"),
    "salsa_published": Optimizer("salsa_optax:salsa_published", group="salsa"),
    "salsa_paper": Optimizer("salsa_optax:salsa_paper", group="salsa"),
    "salsa_momentum": Optimizer(salsa_searched_step, {"search_with_momentum": True}, group="salsa"),
    "salsa_sgd": Optimizer("salsa_optax:salsa_sgd", group="salsa"),
    "sls": Optimizer("salsa_optax:sls", group="salsa"),
    "adam": Optimizer("optax:adam", grid={"learning_rate": ADAM_GRID}, group="tuned"),
    "adamw": Optimizer("optax:adamw", grid={"learning_rate": ADAM_GRID}, group="tuned"),
    "sgdm": Optimizer(
        "optax:sgd", {"momentum": 0.9}, grid={"learning_rate": SGD_GRID}, group="tuned"
    ),
    "adam_linesearch": Optimizer(adam_backtracking_linesearch, group="line search"),
    "prodigy": Optimizer("optax.contrib:prodigy", group="lr-free"),
    "dadapt_adamw": Optimizer("optax.contrib:dadapt_adamw", group="lr-free"),
    "dog": Optimizer("optax.contrib:dog", group="lr-free"),
    "mechanize": Optimizer(mechanized_adam, group="lr-free"),
    "cocob": Optimizer("optax.contrib:cocob", group="lr-free"),
    "schedule_free_adamw": Optimizer(
        "optax.contrib:schedule_free_adamw",
        group="lr-free",
        eval_params="optax.contrib:schedule_free_eval_params",
    ),
    "momo": Optimizer("optax.contrib:momo", group="lr-free"),
    "momo_adam": Optimizer("optax.contrib:momo_adam", group="lr-free"),
    "polyak_sgd": Optimizer("optax:polyak_sgd", group="lr-free"),
    # Related step-size methods: EG adaptation (Amid et al., 2022), layer-wise curvature (Bahamou
    # and Goldfarb, 2023), schedule refinement (Defazio et al., 2023). An entry whose factory
    # cannot be imported is skipped.
    "egdd": Optimizer(
        "salsa_optax:egdd", {"momentum": 0.9}, grid={"learning_rate": SGD_GRID}, group="related"
    ),
    "eg_adam": Optimizer(eg_adam, group="related"),
    "layerwise_adamw": Optimizer("salsa_optax:layerwise_curvature_adamw", group="related"),
    "layerwise_sgd": Optimizer("salsa_optax:layerwise_curvature_sgd", group="related"),
    "adam_linear": Optimizer(adam_linear_decay, grid={"learning_rate": ADAM_GRID}, group="related"),
    # The learning-rate-free optimizers given a linear decay to zero over the run (total steps
    # known), as `adam_linear` has: the fair race for annealing.
    "salsa_linear": Optimizer(salsa_linear, group="annealed"),
    # Hypotheses of the defaults study, each on the default of its time (factories.SEARCHED_STEP:
    # every step the search's). Steps longer than the accepted one by a fixed factor:
    "salsa_x2": Optimizer(salsa_searched_step, {"step_multiplier": 2.0}, group="salsa"),
    # Hypotheses of the same study: steps multiplied according to the smoothed Armijo margin.
    "salsa_margin_gate": Optimizer(salsa_margin_scaled, {"rule": "gate"}, group="salsa"),
    "salsa_line_min": Optimizer(salsa_margin_scaled, {"rule": "line_min"}, group="salsa"),
    # ... and twice the accepted step once the search stopped backtracking (10 clean searches).
    "salsa_settled_x2": Optimizer(salsa_settled_scaled, group="salsa"),
    # ... and up to twice the accepted step on the parameter leaves that moved far from the start.
    "salsa_distance_x2": Optimizer(salsa_distance_scaled, group="salsa"),
    # The same as an option of salsa(): multipliers refreshed at each search, and none while any
    # leaf is scale-invariant (its gradient orthogonal to it: the kernels before BatchNorm); on
    # every loss, deterministic ones included (salsa() since 0.3 adds multiplier_noise).
    "salsa_far_x2": Optimizer(
        salsa_searched_step, {"step_multiplier": 2.0, "multiplier_distance": 0.25}, group="salsa"
    ),
    # ... with each leaf's multiplier cut back while its steps overshoot (cos(g_t, -u_{t-1}) < 0).
    "salsa_overshoot": Optimizer(salsa_overshoot, group="salsa"),
    "prodigy_linear": Optimizer(prodigy_linear, group="annealed"),
    "dadapt_linear": Optimizer(dadapt_linear, group="annealed"),
    "refined_adam": Optimizer(
        refined_adam, grid={"learning_rate": ADAM_GRID}, group="related", prior="adam_linear"
    ),
}


# What a plain run compares (the brief of the benchmark); any other entry is one flag away.
DEFAULT_OPTIMIZERS = (
    "salsa",
    "salsa_paper",
    "salsa_sgd",
    "sls",
    "adam",
    "adamw",
    "sgdm",
    "adam_linesearch",
    "prodigy",
    "dadapt_adamw",
    "dog",
    "mechanize",
    "cocob",
    "schedule_free_adamw",
    "momo",
    "momo_adam",
    "polyak_sgd",
    "egdd",
    "eg_adam",
    "layerwise_adamw",
    "layerwise_sgd",
    "adam_linear",
    "refined_adam",
)
