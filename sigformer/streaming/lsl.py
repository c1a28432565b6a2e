"""Lab Streaming Layer through mne-lsl, with a loopback-only configuration.

LSL's default discovery sends multicast/broadcast packets off the machine. Call
:func:`use_loopback_config` before any LSL object is created (the CLI, the tests, the
benchmarks and the notebooks do) to keep discovery on this machine: it points ``LSLAPICFG`` at
a copy of ``sigformer/resources/lsl_api.cfg`` with its own ``SessionID``, which also isolates
parallel runs from each other.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from importlib import resources
from pathlib import Path

LOOPBACK_TEMPLATE = "lsl_api.cfg"


def loopback_config_text(session_id: str) -> str:
    text = resources.files("sigformer.resources").joinpath(LOOPBACK_TEMPLATE).read_text()
    return text.replace("SessionID = sigformer", f"SessionID = {session_id}")


def use_loopback_config(session_id: str | None = None, *, force: bool = False) -> Path:
    """Set ``LSLAPICFG`` to a loopback-only config (kept if one is already set, unless
    ``force``). Returns the config path. Must run before liblsl is first used."""
    current = os.environ.get("LSLAPICFG")
    if current and not force and Path(current).is_file():
        return Path(current)
    session_id = session_id or f"sigformer-{uuid.uuid4().hex[:12]}"
    directory = Path(tempfile.gettempdir()) / "sigformer-lsl"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{session_id}.cfg"
    path.write_text(loopback_config_text(session_id))
    os.environ["LSLAPICFG"] = str(path)
    return path


def lsl():
    """``mne_lsl.lsl`` with the loopback config in place (a clear error when mne-lsl is
    missing)."""
    use_loopback_config()
    try:
        from mne_lsl import lsl as _lsl
    except ImportError:
        raise ImportError("LSL streaming needs mne-lsl: pip install 'sigformer[lsl]'") from None
    return _lsl
