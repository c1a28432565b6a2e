"""Speech: audio I/O, metrics, losses and long-form/streaming inference for the speech models."""
