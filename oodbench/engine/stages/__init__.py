"""One module per task kind: each builds the :class:`~oodbench.engine.plan.Task` of its stage (key,
inputs, resources, cost) and holds the function that computes its artifact, and nothing else."""
