"""Backbones: architectures, the classifier wrapper, checkpoints and the training recipe."""
