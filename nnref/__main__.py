"""``python -m nnref``: see :mod:`nnref.cli`."""

from .cli import main

raise SystemExit(main())
