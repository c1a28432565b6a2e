"""Data loaders (files, PhysioNet eegmmidb, MOABB) and simulators."""

from .bonn import load_bonn
from .eegmmidb import EEGMMIDB_RUNS, load_eegmmidb, read_eegmmidb_run
from .io import DataError, read_recording
from .moabb_bridge import load_moabb
from .simulate import simulate_motor_imagery

__all__ = [
    "DataError", "EEGMMIDB_RUNS", "load_bonn", "load_eegmmidb", "load_moabb", "read_eegmmidb_run",
    "read_recording", "simulate_motor_imagery",
]
