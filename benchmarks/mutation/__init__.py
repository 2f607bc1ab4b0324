"""Mutation testing of salsa_optax with mutmut: ``bash scripts/mutation.sh MODULE...``."""
