"""Two-way sync between Invoiced and Keap."""

__version__ = "0.1.0"
