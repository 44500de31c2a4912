"""checkgate: checkpoint gate controller (edge daemon, device drivers, central server)."""

__version__ = "0.1.0"
