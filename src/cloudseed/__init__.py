"""cloudseed: instance metadata for private clouds, the OpenStack way."""

__version__ = "0.1.0"
