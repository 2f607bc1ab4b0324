"""ResNet image classification with SaLSa: ``python -m examples.resnet.main`` (see README.md)."""
