"""rbft: Rationale-Bootstrapped Fine-Tuning of vision-language models for video classification."""

__version__ = "0.1.0"
