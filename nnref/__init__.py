"""nnref: a pure-NumPy reference for training with gradient clipping and integer-only
quantized inference.

Modules, one idea each: ``layers``, ``losses``, ``mlp``, ``gradcheck``, ``optim``,
``train``, ``clip``, ``experiments``; the data (``data``, with ``idx`` and ``mnist`` for
the MNIST files); the figures (the ``plots`` package: training and quantization plots);
the ``quant`` package (quantization parameters, observers, fake quantization, fixed-point
arithmetic, integer kernels, conversion of a float model to an integer-only one); and the
main job (``pipeline``) with its command line (``cli``, run as ``python -m nnref``).
"""

__version__ = "0.1.0"
