"""What the speed benchmark times: the optax variants, their PyTorch counterparts, the models.

Adding an optimizer is one entry in :data:`VARIANTS`.
"""

from collections.abc import Callable
from typing import NamedTuple

import optax

import salsa_optax
from benchmarks.speed import models


class Variant(NamedTuple):
    """A timed optax transform.

    Attributes:
      label: its name in the tables and figures.
      make: builds the transform.
    """

    label: str
    make: Callable[[], optax.GradientTransformation]


VARIANTS: dict[str, Variant] = {
    "adam": Variant("optax.adam", lambda: optax.adam(1e-3)),
    "salsa": Variant("salsa()", salsa_optax.salsa),
    "salsa_every_step": Variant(
        "salsa(adaptive_search_frequency=False)",
        lambda: salsa_optax.salsa(adaptive_search_frequency=False),
    ),
    # The schedule never searches: every step is a skipped one, its cost beside Adam's step.
    "salsa_skipped": Variant(
        "salsa(), skipped steps only",
        lambda: salsa_optax.salsa(warmup_searches=0, max_search_interval=10**6),
    ),
    "sls": Variant("sls()", salsa_optax.sls),
    "optax_backtracking": Variant(
        "adam + optax backtracking (15)",
        lambda: optax.chain(
            optax.adam(1.0), optax.scale_by_backtracking_linesearch(max_backtracking_steps=15)
        ),
    ),
    "sgd": Variant("optax.sgd", lambda: optax.sgd(1e-2)),
    "salsa_sgd": Variant("salsa_sgd()", salsa_optax.salsa_sgd),
}
SCALING_VARIANTS = ("adam", "salsa", "salsa_every_step")
# The authors' PyTorch optimizer and torch Adam, by label; each is the counterpart of one of ours.
TORCH_VARIANTS = {
    "torch_adam": "torch.optim.Adam",
    "torch_salsa": "SaLSA (authors', speed_up)",
    "torch_salsa_every_step": "SaLSA (authors', every step)",
}


TORCH_COUNTERPARTS = {
    "adam": "torch_adam",
    "salsa": "torch_salsa",
    "salsa_every_step": "torch_salsa_every_step",
}


PROBES = ("forward", "forward_backward")


MODELS: dict[str, Callable[[], models.SpeedModel]] = {
    "mlp": models.mlp,
    "resnet": models.resnet,
    "resnet16": lambda: models.resnet(16),
    "cnn": models.cnn,
    "transformer": models.transformer,
    "resnet50": models.resnet50,
    "bert_base": models.bert_base,
    "tiny": models.tiny,
}


def label(name: str) -> str:
    """The name of a variant, ours or torch's, in the tables and figures."""
    return VARIANTS[name].label if name in VARIANTS else TORCH_VARIANTS[name]
