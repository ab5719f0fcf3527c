"""brood: a gateway/router suite for Python web deployments, uWSGI-compatible, on trio."""

__version__ = "0.1.0"
