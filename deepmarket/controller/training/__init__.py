"""TrainingRun: train a module on the user's WebDAV/Nextcloud data in a Job (pure builders and
status beside thin handlers; `step.py` is the program the Job's pod runs)."""

from deepmarket.controller.training.handlers import setup

__all__ = ["setup"]
