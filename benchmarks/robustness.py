"""How robust the tiny profile's lesson is: the course's fine-tune with seeds 0-4, scored on the test split.

    python benchmarks/robustness.py [--seeds 0,1,2,3,4] [--out benchmarks/results/robustness_cpu.json]

The same as `python -m helpers robustness` (see helpers/robustness.py): every seed's scores, min / median / max,
the targets (exact match median >= 0.80 and min >= 0.60, name accuracy median >= 0.85), machine and versions.
It exits 1 if a target is missed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    from helpers.cli import main

    sys.exit(main(["robustness", *sys.argv[1:]]))
