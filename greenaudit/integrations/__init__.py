"""Callbacks for training frameworks: PyTorch Lightning, Hugging Face ``transformers`` and Keras.

Each logs the framework's metrics at epoch and evaluation boundaries, with the global step,
to the active greenaudit run, or to a run of its own that lasts as long as the training.
Install the framework's extra: ``greenaudit[lightning]``, ``greenaudit[hf]``, ``greenaudit[keras]``.
"""
