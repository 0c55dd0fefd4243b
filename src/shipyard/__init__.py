"""Shipyard: Render Blueprints deployed on a machine you own."""

__version__ = "0.1.0"
__all__ = ["__version__"]
