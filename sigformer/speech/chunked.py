"""Deprecated location of the overlap-add inference: use :mod:`sigformer.windowing`
(``OverlapAdd``, ``process_array``) and the streaming runtime (``sigformer stream``)."""

from ..windowing import (  # noqa: F401 - earlier public names
    ChunkedProcessor,
    ModelFn,
    OverlapAdd,
    best_alignment,
    model_function,
    process_array,
    process_file,
)

__all__ = ["ChunkedProcessor", "ModelFn", "OverlapAdd", "best_alignment", "model_function",
           "process_array", "process_file"]
