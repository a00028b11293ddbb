"""optitop: a terminal live monitor for ML inference servers."""

from __future__ import annotations

__version__ = "0.1.0"
