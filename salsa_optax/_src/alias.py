"""The SaLSa optimizers: the full Adam-direction optimizer, its presets, SGD and SLS forms."""

import inspect
from collections.abc import Callable
from typing import Any

import optax

from salsa_optax._src.defaults import SEARCH_DEFAULTS as DEFAULTS
from salsa_optax._src.directions import adam_directions, gradient_direction
from salsa_optax._src.transform import salsa_transformation, search_arguments

_PUBLISHED_STEPS = {
    "rescale_momentum": False,
    "step_multiplier": 1.0,
    "multiplier_distance": None,
    "multiplier_noise": None,
    "rescale_distance": None,
    "searched_step_along_momentum": False,
    "increase_factor": 1.1,
}

PUBLISHED_DEFAULTS = {
    "slope_rtol": 0.5,
    "smoothing": 0.9,
    **_PUBLISHED_STEPS,
    "reference_bypass": True,
}
"""The authors' published PyTorch optimizer: ``c``, ``beta3``; skipped steps move along the plain
momentum direction, searched steps to the accepted trial point; the step size grows by 1.1 at
each step; the search is bypassed when the loss or the smoothed slope is below 1e-8."""

PAPER_VALUES = {"slope_rtol": 0.3, "smoothing": 0.99, **_PUBLISHED_STEPS}
"""``c`` and ``beta3`` as given in the text of the SaLSa paper; steps and growth as published."""


def salsa(
    slope_rtol: Any = DEFAULTS.slope_rtol,
    smoothing: Any = DEFAULTS.smoothing,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    search_with_momentum: bool = False,
    rescale_momentum: Any = True,
    step_multiplier: Any = 2.0,
    multiplier_distance: Any = 0.25,
    multiplier_noise: Any = 0.05,
    rescale_distance: Any = 0.25,
    rescale_each_step: bool = False,
    searched_step_along_momentum: bool = False,
    adaptive_search_frequency: Any = DEFAULTS.adaptive_search_frequency,
    decrease_factor: Any = DEFAULTS.decrease_factor,
    increase_factor: Any = DEFAULTS.increase_factor,
    warm_start_factor: Any = DEFAULTS.warm_start_factor,
    growth_margin: Any = DEFAULTS.growth_margin,
    max_backtracking_steps: Any = DEFAULTS.max_backtracking_steps,
    initial_learning_rate: Any = DEFAULTS.initial_learning_rate,
    max_learning_rate: Any = DEFAULTS.max_learning_rate,
    warmup_searches: Any = DEFAULTS.warmup_searches,
    max_search_interval: Any = DEFAULTS.max_search_interval,
    reference_bypass: bool = False,
    aux_like: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""ADAM + SaLSa: Adam whose step size is found by SaLSa's smoothed Armijo line search.

    One step (see :func:`scale_by_salsa` for the test, its guards and the search-frequency
    schedule):

    1. decoupled weight decay with the stored step size, :math:`\tilde w = w - \lambda\eta w`;
    2. Adam moments and bias correction, :math:`P = 1/(\sqrt{\hat v} + \epsilon)`;
    3. a searching step tests trial points :math:`\tilde w - \eta P g` (or :math:`- \eta P \hat m`
       with ``search_with_momentum``), starting from :math:`\gamma\eta`, and takes the accepted
       one; a step the schedule skips moves each parameter leaf to
       :math:`\tilde w - \gamma\eta P \hat m \, (\|Pg\|/\|P\hat m\|)^{\rho r}`, where
       :math:`r \in [0, 1]` grows with the leaf's distance from its start (``rescale_distance``);
    4. on a noisy (minibatch) loss, each parameter leaf that has left its start moves up to
       ``step_multiplier`` times that step (see ``multiplier_distance`` and
       ``multiplier_noise``).

    The defaults are not the authors' published ones (:func:`salsa_published`); the README's
    *Defaults* gives the measurements that chose them. Skipped steps move as far as searched ones
    (``rescale_momentum=True``: the published momentum step is 4–5× shorter than the search
    direction its step size was calibrated on) once a leaf has left its start, while fine-tuned
    weights near their pretrained values take the published step (``rescale_distance``), the
    step size never grows
    (``increase_factor=1.0``), the search never depends on the loss's offset (no
    ``reference_bypass``), and in minibatch training from scratch every step moves twice what
    the search accepted, where neither a deterministic loss, a fine-tuned network nor a
    BatchNorm network would keep its search's step.

    Without weight decay and with ``search_with_momentum=True`` this equals
    ``optax.chain(optax.adam(1.0, b1, b2, eps), scale_by_salsa(...))`` given the same search
    arguments.

    Args:
      slope_rtol: :math:`c` of the Armijo test.
      smoothing: :math:`\beta_3`, the smoothing of both sides of the test.
      b1: Adam's first-moment decay.
      b2: Adam's second-moment decay.
      eps: Adam's :math:`\epsilon`.
      weight_decay: :math:`\lambda`, decoupled weight decay scaled by the stored step size.
      search_with_momentum: search along the momentum direction instead of the momentum-free one
        (static: pass it in ``static_args`` of :func:`optax.inject_hyperparams`).
      rescale_momentum: :math:`\rho \in [0, 1]`: a step the schedule skips moves along the
        momentum direction rescaled by :math:`(\|Pg\|/\|P\hat m\|)^\rho`; ``True`` is 1 (the
        length of the search direction), ``False`` is 0 (the published step).
      step_multiplier: every step, searched or skipped, moves this many times the step size the
        search accepted (or proposed); the search, its test and the stored step size do not see
        it. With ``c = 0.5`` an accepted step lies short of the minimum of the loss along the
        search direction, where a quadratic model puts it; ``2`` moves towards the far side of
        that minimum, where the largest stable step of gradient descent lies.
      multiplier_distance: ``None`` (every parameter takes ``step_multiplier``), or
        :math:`\delta > 0`: a parameter leaf takes the multiplier only as far as it has moved
        from its initial value :math:`w_0`, :math:`1 + (\mu - 1)\min(1, \|w - w_0\| / (\delta
        \|w_0\|))` times the step size, measured at each search (a leaf that starts at zero
        counts as far): weights trained from scratch soon move by their initial norm, fine-tuned
        weights stay near their pretrained values and keep the search's step. While any leaf is
        scale-invariant (its gradient orthogonal to it at every search, as BatchNorm makes the
        weights before it), no leaf takes the multiplier: the step size of such a network
        follows its weight norms, and longer steps there feed back into them (README, *Fifth
        round*). The state keeps a copy of the initial parameters.
      multiplier_noise: ``None`` (the multiplier applies whatever the loss), or :math:`\nu > 0`:
        the multiplier applies only while the loss is noisy. After each search the loss of its
        batch at the next iterate is predicted from a quadratic through the search's value,
        slope and accepted trial; the next step's ``value`` (another batch, at those weights)
        differs from it by the residual, and the multiplier applies while the residual's running
        root mean square exceeds :math:`\nu` times that of the steps' linear change. On a
        deterministic (full-batch) loss the residual is zero (the step lands on the evaluated
        trial) and every step keeps the search's, as multiplied steps would overshoot the line
        minimum and stall short of the optimum; on minibatches of 16–128 examples the ratio
        stayed above 0.15 after the first tenth of each run (README, *Seventh round*).
      rescale_distance: ``None`` (every skipped step takes ``rescale_momentum``'s rescaling, the
        default before 0.4), or
        :math:`\delta_\rho > 0`: a parameter leaf takes the rescaling only as far as it has moved
        from its initial value, :math:`(\|Pg\|/\|P\hat m\|)^{\rho \min(1, \|w - w_0\| /
        (\delta_\rho \|w_0\|))}`, measured at each search (a leaf that starts at zero counts as
        far): a fine-tuned network near its pretrained weights takes the published momentum step,
        one trained from scratch the rescaled step once it has left its start. The state keeps a
        copy of the initial parameters (one copy, shared with ``multiplier_distance``).
      rescale_each_step: measure :math:`\|Pg\|/\|P\hat m\|` on every step, as before 0.5
        (static). By default a step the schedule skips measures it only where
        ``multiplier_noise`` has measured the loss and found it not noisy; on a noisy loss it
        takes the factor the last search measured, and makes no pass over the parameters beyond
        Adam's (measuring takes two, each with a division and a square root per entry). On a
        deterministic loss every step measures it: a factor kept from a search stalls a
        converging run there.
      searched_step_along_momentum: a searched step moves along the (rescaled) momentum
        direction with the accepted step size, as a skipped step does, instead of to the accepted
        trial point on :math:`-P g` (static).
      adaptive_search_frequency: search only as often as the step size moves.
      decrease_factor: factor shrinking a rejected step size.
      increase_factor: :math:`\gamma`, factor growing the stored step size at each step (1:
        never; the published optimizer's is 1.1).
      warm_start_factor: until a search first rejects a trial, the step size grows by this
        factor instead (``None``: no such phase); see :func:`scale_by_salsa`.
      growth_margin: after a search whose first trial passed with a relative Armijo margin above
        it, the step size grows towards the one passing with this margin (``None``: no such
        growth); see :func:`scale_by_salsa`.
      max_backtracking_steps: at most this many trial points per search.
      initial_learning_rate: the stored step size before the first step.
      max_learning_rate: cap on the proposed step size (``None``: no cap).
      warmup_searches: the first steps always search.
      max_search_interval: the longest gap between searches.
      reference_bypass: skip the search, as the authors' optimizer does, when the loss or the
        smoothed slope is below 1e-8, taking the stored step size untested (static). It makes
        the search depend on the loss's offset: a negative loss never searches.
      aux_like: the structure of ``value_fn``'s aux output, see :func:`scale_by_salsa`.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs`; its ``update`` takes ``value``, ``grad``
      and ``value_fn`` as :func:`scale_by_salsa` does, and the raw gradients as updates.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, salsa_optax
      >>> def loss_fn(params, x, y):
      ...   return jnp.mean((x @ params - y) ** 2)
      >>> x = jax.random.normal(jax.random.key(0), (32, 3))
      >>> y = x @ jnp.array([1.0, -2.0, 0.5])
      >>> params, tx = jnp.zeros(3), salsa_optax.salsa()
      >>> state = tx.init(params)
      >>> @jax.jit
      ... def train_step(params, state):
      ...   value, grad = jax.value_and_grad(loss_fn)(params, x, y)
      ...   updates, state = tx.update(grad, state, params, value=value, grad=grad,
      ...                              value_fn=loss_fn, x=x, y=y)
      ...   return optax.apply_updates(params, updates), state
      >>> for _ in range(200):
      ...   params, state = train_step(params, state)
      >>> bool(loss_fn(params, x, y) < 1e-3)
      True

    References:
      Kenneweg, Kenneweg, Fumagalli, Hammer, `No learning rates needed: Introducing SALSA - Stable
      Armijo Line Search Adaptation <https://arxiv.org/abs/2407.20650>`_, IJCNN 2024.
    """
    return salsa_transformation(
        adam_directions(b1, b2, eps, search_with_momentum, rescale_momentum),
        name="salsa",
        weight_decay=weight_decay,
        step_multiplier=step_multiplier,
        multiplier_distance=multiplier_distance,
        multiplier_noise=multiplier_noise,
        rescale_distance=rescale_distance,
        rescale_each_step=rescale_each_step,
        searched_step_along_step_direction=searched_step_along_momentum,
        reference_bypass=reference_bypass,
        **search_arguments(locals()),
    )


def salsa_sgd(
    slope_rtol: Any = DEFAULTS.slope_rtol,
    smoothing: Any = DEFAULTS.smoothing,
    decrease_factor: Any = DEFAULTS.decrease_factor,
    increase_factor: Any = DEFAULTS.increase_factor,
    warm_start_factor: Any = DEFAULTS.warm_start_factor,
    growth_margin: Any = DEFAULTS.growth_margin,
    max_backtracking_steps: Any = DEFAULTS.max_backtracking_steps,
    initial_learning_rate: Any = DEFAULTS.initial_learning_rate,
    max_learning_rate: Any = DEFAULTS.max_learning_rate,
    adaptive_search_frequency: Any = DEFAULTS.adaptive_search_frequency,
    warmup_searches: Any = DEFAULTS.warmup_searches,
    max_search_interval: Any = DEFAULTS.max_search_interval,
    aux_like: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """SaLSa on the plain gradient direction, a full optimizer taking the raw gradients.

    Equal to ``optax.chain(optax.sgd(1.0), scale_by_salsa(...))`` with the same arguments (see
    :func:`scale_by_salsa` for each), with a single state.

    Examples:
      >>> import salsa_optax
      >>> tx = salsa_optax.salsa_sgd(max_learning_rate=10.0)
    """
    return salsa_transformation(
        gradient_direction(), name="salsa_sgd", **search_arguments(locals())
    )


def _preset(
    base: Callable[..., optax.GradientTransformationExtraArgs],
    name: str,
    doc: str,
    defaults: dict[str, Any],
    fixed: dict[str, Any] | None = None,
) -> Callable[..., optax.GradientTransformationExtraArgs]:
    """``base`` with other defaults and some arguments fixed, under an explicit signature.

    The signature (read by :func:`optax.inject_hyperparams` and by ``help``) is ``base``'s, with
    ``defaults`` as the new default values and without the ``fixed`` arguments.
    """
    fixed = fixed or {}
    parameters = [
        p.replace(default=defaults.get(p.name, p.default))
        for p in inspect.signature(base).parameters.values()
        if p.name not in fixed
    ]
    signature = inspect.Signature(
        parameters, return_annotation=optax.GradientTransformationExtraArgs
    )

    def factory(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return base(**bound.arguments, **fixed)

    factory.__signature__ = signature
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    factory.__module__ = __name__
    return factory


salsa_published = _preset(
    salsa,
    "salsa_published",
    """:func:`salsa` with the authors' published defaults, :data:`PUBLISHED_DEFAULTS`.

    ``c = 0.5``, ``beta3 = 0.9``, skipped steps along the plain momentum direction, a step size
    that grows by 1.1 at each step, and the search bypassed when the loss or the smoothed slope is
    below 1e-8. This is the optimizer of the reference trajectories (``tests/data/vectors``).
    Two guards differ from the authors' code and never act on those trajectories: a bypassed step
    takes the stored step size without growing it (the authors' grows without bound once the
    loss reaches zero, until the parameters overflow), and a search whose trials all fail keeps
    the stored step size instead of the last, tiny trial. Every argument of :func:`salsa` may be
    given.

    Examples:
      >>> import salsa_optax
      >>> tx = salsa_optax.salsa_published(weight_decay=1e-4)
    """,
    PUBLISHED_DEFAULTS,
)

salsa_paper = _preset(
    salsa,
    "salsa_paper",
    """:func:`salsa` with the values given in the paper's text (``c = 0.3``, ``beta3 = 0.99``).

    Steps and growth as published (:data:`PAPER_VALUES`). Every argument of :func:`salsa` may be
    given.

    Examples:
      >>> import salsa_optax
      >>> tx = salsa_optax.salsa_paper()
    """,
    PAPER_VALUES,
)

sls = _preset(
    salsa_sgd,
    "sls",
    """The classic stochastic Armijo line search (SLS) on the gradient direction.

    SaLSa without smoothing (``beta3 = 0``) and with a search on every step: the baseline of the
    SaLSa paper. Defaults ``c = 0.1`` and backtracking factor 0.9 follow Vaswani et al.; the other
    arguments are those of :func:`salsa_sgd`.

    Examples:
      >>> import salsa_optax
      >>> tx = salsa_optax.sls(max_learning_rate=10.0)

    References:
      Vaswani et al., `Painless Stochastic Gradient <https://arxiv.org/abs/1905.09997>`_, 2019.
    """,
    {"slope_rtol": 0.1, "decrease_factor": 0.9},
    fixed={"smoothing": 0.0, "adaptive_search_frequency": False},
)
