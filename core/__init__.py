"""simgate: session admission server for IoT SIMs."""

__version__ = "0.1.0"
