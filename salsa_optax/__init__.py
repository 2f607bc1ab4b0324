"""salsa_optax: learning-rate-free training for JAX with SaLSa line searches."""

from salsa_optax._src.alias import (
    PAPER_VALUES,
    PUBLISHED_DEFAULTS,
    salsa,
    salsa_paper,
    salsa_published,
    salsa_sgd,
    sls,
)
from salsa_optax._src.directions import AdamDirectionsState
from salsa_optax._src.transform import SalsaInfo, ScaleBySalsaState, scale_by_salsa

__version__ = "0.1.0"

__all__ = [
    "PAPER_VALUES",
    "PUBLISHED_DEFAULTS",
    "AdamDirectionsState",
    "SalsaInfo",
    "ScaleBySalsaState",
    "salsa",
    "salsa_paper",
    "salsa_published",
    "salsa_sgd",
    "scale_by_salsa",
    "sls",
]
