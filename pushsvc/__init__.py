"""pushsvc: targeted push of government policy to the people it concerns."""

__version__ = "0.1.0"
