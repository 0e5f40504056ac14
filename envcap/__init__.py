"""envcap: capture an ML environment, rebuild it as an image, replay a run and explain differences."""

__version__ = "0.1.0"
