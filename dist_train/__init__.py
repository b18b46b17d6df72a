"""dist_train: distributed training of multilingual vision-language models."""

__version__ = "0.1.0"
