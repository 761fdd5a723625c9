"""Podrelay: a job gateway between image apps and RunPod Serverless."""

__version__ = "0.1.0"
