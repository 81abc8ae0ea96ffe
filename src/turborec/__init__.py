"""turborec: real-time deep-learning recommendation within a p99 latency budget.

The top-level package stays light: heavy parts (torch, FAISS, the service) load
only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
