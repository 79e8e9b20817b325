"""The classifier wrapper, where weights come from (files, pytorch-ood, training) and the training recipe.

Backbone architectures are plugins: the top-level ``backbones/`` folder.
"""
