"""Look inside a network: its layers by name, activations, filters, class activation maps, confusion, sparsity.

Sits above the engine (it reads predictions with the engine's `predict`) and below the report; draws
through cnnlab.viz. `explain_run` writes every figure of a classifier and returns their record.
"""

from cnnlab.explain.figures import explain_run

__all__ = ["explain_run"]
