"""EEG/sEEG models."""
