"""Example trainers built on salsa_optax (run them with ``python -m examples.<name>.main``)."""
