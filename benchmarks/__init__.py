"""Benchmarks of salsa_optax: solution quality (``quality.py``) and speed (``speed.py``)."""
