"""slarm-bench: a benchmark suite for feed-forward reconstruction of dynamic driving scenes.

Importing this package is cheap: heavy dependencies (torch, gsplat, pandas) are imported by the modules
that need them, never here.
"""

__version__ = "0.1.0"
