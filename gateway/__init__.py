"""AIM License Gateway: batch intake, validation and licensing for U.S. aluminum imports."""

__version__ = "0.1.0"
