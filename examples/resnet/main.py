"""Trains a ResNet image classifier with SaLSa or any optax optimizer.

Usage (from the repository root)::

  python -m examples.resnet.main --config=cpu --workdir=/tmp/resnet_cpu
  python -m examples.resnet.main --config=cpu --set optimizer=adam --workdir=/tmp/resnet_adam
  python -m examples.resnet.main --config=cifar10 --set batch_size=256 --workdir=/tmp/cifar

``--config`` names a module of ``examples/resnet/configs``; each ``--set key=value`` replaces one
field of it (values are Python literals; anything else is taken as a string). Run again with the
same ``--workdir`` to resume from its last checkpoint; SIGTERM or Ctrl-C saves one and stops.

On several hosts every host runs the same command, with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (none of them under SLURM's ``srun`` or Open MPI's
``mpirun``; ``--distributed`` on a Cloud TPU slice): see the *Several hosts* section of
``examples/resnet/README.md``.
"""

import argparse

from examples.common import configs, distributed, metrics
from examples.resnet import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="a module of examples/resnet/configs")
    parser.add_argument("--workdir", required=True, help="metrics, checkpoints and plots go here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    distributed.add_flags(parser)
    args = parser.parse_args(argv)
    distributed.initialize(args)
    primary = distributed.is_primary()  # the one process that prints
    config = configs.load_config("examples.resnet.configs", args.config, args.set)
    if primary:
        print(config)
    summary = train.train_and_evaluate(config, args.workdir)
    if primary:
        print(metrics.format_summary(summary))


if __name__ == "__main__":
    main()
