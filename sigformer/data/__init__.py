"""Data loaders (files, PhysioNet eegmmidb, MOABB, CSV/XDF) and simulators."""

from ..validation import DataWarning
from .bonn import load_bonn
from .csv_recording import read_csv_recording
from .eegmmidb import EEGMMIDB_RUNS, load_eegmmidb, read_eegmmidb_run
from .io import DataError, read_recording
from .moabb_bridge import MOABBEpochs, load_moabb
from .simulate import simulate_motor_imagery
from .xdf import read_xdf_recording

__all__ = [
    "DataError", "DataWarning", "EEGMMIDB_RUNS", "MOABBEpochs", "load_bonn", "load_eegmmidb",
    "load_moabb", "read_csv_recording", "read_eegmmidb_run", "read_recording",
    "read_xdf_recording", "simulate_motor_imagery",
]
