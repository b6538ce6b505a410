"""Which checked cells of a chapter print other numbers on another CPU?

    python scripts/cpu_sensitive_cells.py book/NN_chapter.ipynb [...]

A cell tagged ``nbval-check-output`` must print the same on every machine that runs
the tests. Training runs are seeded, but the last bits of a float32 convolution or
matrix product depend on the CPU's vector instructions (AVX-512, AVX2, SSE) and on
the kernels oneDNN and MKL pick for it; a chaotic training run turns those bits
into other printed digits (0.930 on one CPU, 0.929 on another). This script executes
each chapter with other vector instructions than this machine's best (ATen's default
kernels, oneDNN limited to SSE4.1, MKL in its compatible mode), as another CPU
would, and lists the checked cells whose output changes. Tag such a cell
``varies-by-cpu`` instead of ``nbval-check-output`` (and run `make notebooks`):
the book still shows what it prints, and the tests do not pin it.
On 2026-12-02 it found exactly the cells that differed between two machines of CI's kind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before any kernel starts: the kernels inherit this environment.
os.environ.update(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41", MKL_CBWR="COMPATIBLE",
                  MKL_ENABLE_INSTRUCTIONS="SSE4_2")

import nbclient  # noqa: E402
import nbformat  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_chapters import checked_cells, comparable  # noqa: E402


def sensitive_cells(path: Path) -> list[int]:
    """Indices of the checked cells of ``path`` whose output differs when executed with other vector instructions."""
    committed = nbformat.read(path, as_version=4)
    executed = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(executed, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return [i for i, cell in checked_cells(committed).items()
            if comparable(cell.outputs) != comparable(executed.cells[i].outputs)]


if __name__ == "__main__":
    for name in sys.argv[1:] or sys.exit(__doc__):
        print(f"{name}: checked cells that vary by CPU: {sensitive_cells(Path(name).resolve())}")
