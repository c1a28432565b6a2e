"""Lab Streaming Layer through mne-lsl, with a loopback-only configuration.

LSL's default discovery sends multicast/broadcast packets off the machine. Call
:func:`use_loopback_config` before any LSL object is created (the CLI, the tests, the
benchmarks and the notebooks do) to keep discovery on this machine: it points ``LSLAPICFG`` at
the shipped ``sigformer/resources/lsl_api.cfg`` (nothing is written anywhere). Pass a
``session_id`` to isolate parallel runs from each other: that writes one config file per
session id into the given folder (or a temporary one), which the caller owns.

Note on data ports: the config keeps *discovery* on this machine, but liblsl still binds its
data ports (TCP/UDP 16572-16604 by default) on all interfaces. On a shared network, firewall
them, e.g. ``sudo ufw deny in 16572:16604/tcp`` and ``.../udp``, or run behind a host firewall
that only admits 127.0.0.1.
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


def shipped_config_path() -> Path:
    """The loopback-only config inside the installed package."""
    return Path(str(resources.files("sigformer.resources").joinpath(LOOPBACK_TEMPLATE)))


def use_loopback_config(session_id: str | None = None, *, force: bool = False,
                        directory: str | os.PathLike | None = None) -> Path:
    """Set ``LSLAPICFG`` to a loopback-only config (kept if one is already set, unless
    ``force``). Returns the config path. Must run before liblsl is first used."""
    current = os.environ.get("LSLAPICFG")
    if current and not force and Path(current).is_file():
        return Path(current)
    if session_id is None:
        path = shipped_config_path()
    else:
        folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(
            prefix="sigformer-lsl-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{session_id}.cfg"
        path.write_text(loopback_config_text(session_id))
    os.environ["LSLAPICFG"] = str(path)
    return path


def new_session_id() -> str:
    return f"sigformer-{uuid.uuid4().hex[:12]}"


def lsl():
    """``mne_lsl.lsl`` with the loopback config in place (a clear error when mne-lsl is
    missing)."""
    use_loopback_config()
    try:
        from mne_lsl import lsl as _lsl
    except ImportError:
        raise ImportError("LSL streaming needs mne-lsl: pip install 'sigformer[lsl]'") from None
    return _lsl
