"""Configs of the ResNet trainer: ``python -m examples.resnet.main --config=<module name>``."""
