"""The one set of SaLSa search defaults, shared by :func:`scale_by_salsa` and :func:`salsa`."""

from typing import Any, NamedTuple


class SearchDefaults(NamedTuple):
    """Default values of the search hyper-parameters every SaLSa factory shares.

    The README's *Defaults* section gives the measurements that chose them; the authors'
    published values are :data:`salsa_optax.PUBLISHED_DEFAULTS`.
    """

    slope_rtol: Any = 0.5
    smoothing: Any = 0.9
    decrease_factor: Any = 0.8
    increase_factor: Any = 1.0
    warm_start_factor: Any = None
    growth_margin: Any = None
    max_backtracking_steps: Any = 100
    initial_learning_rate: Any = 1.0
    max_learning_rate: Any = None
    adaptive_search_frequency: Any = True
    warmup_searches: Any = 9
    max_search_interval: Any = 10


SEARCH_DEFAULTS = SearchDefaults()
