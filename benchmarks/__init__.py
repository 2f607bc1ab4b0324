"""Benchmarks of salsa_optax: solution quality (``quality/``) and speed (``speed/``)."""
