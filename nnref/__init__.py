"""nnref: a pure-NumPy reference for training with gradient clipping and integer-only
quantized inference.

Modules, one idea each: ``layers``, ``losses``, ``mlp``, ``gradcheck``, ``optim``,
``train``, ``data``, ``clip``, ``experiments``, ``plots``, and the ``quant`` package
(quantization parameters, observers, fake quantization, fixed-point arithmetic, integer
kernels, conversion of a float model to an integer-only one).
"""

__version__ = "0.1.0"
