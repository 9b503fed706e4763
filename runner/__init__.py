"""vlrun: a configuration-driven runner for Azure AI Voice Live agents."""

__version__ = "0.1.0"
