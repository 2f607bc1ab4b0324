"""Fine-tunes a pretrained BERT classifier with SaLSa or any optax optimizer.

Usage (from the repository root)::

  python -m examples.bert.main --workdir=/tmp/bert_salsa
  python -m examples.bert.main --config=adamw --set learning_rate=5e-5 --workdir=/tmp/bert_adamw
  python -m examples.bert.main --set dataset=glue/mrpc --set num_epochs=3 --workdir=/tmp/mrpc

``--config`` names a module of ``examples/bert/configs``; each ``--set key=value`` replaces one
field of it (values are Python literals; anything else is taken as a string). Run again with the
same ``--workdir`` to resume from its last checkpoint; SIGTERM or Ctrl-C saves one and stops.

On several hosts every host runs the same command, with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (none of them under SLURM's ``srun`` or Open MPI's
``mpirun``; ``--distributed`` on a Cloud TPU slice): see the *Several hosts* section of
``examples/resnet/README.md``.
"""

import argparse

from examples.bert import train
from examples.common import configs, distributed, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="a module of examples/bert/configs")
    parser.add_argument("--workdir", required=True, help="metrics, checkpoints and plots go here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    distributed.add_flags(parser)
    args = parser.parse_args(argv)
    distributed.initialize(args)
    primary = distributed.is_primary()  # the one process that prints
    config = configs.load_config("examples.bert.configs", args.config, args.set)
    if primary:
        print(config)
    summary = train.train_and_evaluate(config, args.workdir)
    if primary:
        print(metrics.format_summary(summary))
        print(f"{summary['task_metric']:<15} {summary['eval_' + summary['task_metric']]:.4f}")


if __name__ == "__main__":
    main()
