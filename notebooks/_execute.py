"""Execute every notebook in place (outputs are committed so readers see results)."""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    # the kernel inherits the environment: make sure plots go inline even where MPLBACKEND
    # is set to a headless backend (CI)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


if __name__ == "__main__":
    for path in sorted(HERE.glob("[0-9]*.ipynb")) if len(sys.argv) < 2 else map(Path, sys.argv[1:]):
        t0 = time.perf_counter()
        nbformat.write(execute(path), path)
        print(f"{path.name}: executed in {time.perf_counter() - t0:.0f} s")
