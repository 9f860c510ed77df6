"""loop: an active-learning labelling loop with a Label Studio backend."""

__version__ = "0.1.0"
