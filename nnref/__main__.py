"""``python -m nnref``: the command line of :mod:`nnref.cli`."""

from .cli import main

raise SystemExit(main())
