import json
import subprocess
import sys

from helpers.robustness import TARGETS, check_targets, spread, spread_table


def test_spread_and_targets_use_every_seed():
    rows = [{"seed": s, "exact_match": em, "name": n, "steps": 270} for s, em, n in
            ((0, 0.9, 0.95), (1, 0.8, 0.9), (2, 0.55, 0.7))]
    stats = spread(rows)
    assert stats["exact_match"] == {"min": 0.55, "median": 0.8, "max": 0.9} and "seed" not in stats
    assert check_targets(stats) == ["exact_match min 0.55 is below the target 0.60"]
    assert "| exact_match | 0.55 | 0.80 | 0.90 |" in spread_table({"spread": stats})
    assert TARGETS["exact_match"] == {"median": 0.80, "min": 0.60} and TARGETS["name"] == {"median": 0.85}


def test_the_robustness_command_writes_every_seed_with_machine_and_versions(tmp_path):
    """A quick check that the measurement runs end to end (2 steps, so no target is expected to be met here)."""
    out = tmp_path / "robustness.json"
    proc = subprocess.run([sys.executable, "-m", "helpers", "robustness", "--seeds", "3", "--max-steps", "2",
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [r["seed"] for r in record["runs"]] == [3] and record["runs"][0]["steps"] == 2
    assert {"exact_match", "name", "city", "time", "exact_match (unseen phrasing)"} <= set(record["spread"])
    assert record["versions"]["transformers"] and record["machine"]["cpu_cores"] and record["base_model_sha256"]
    assert ("target missed" in proc.stdout) == bool(record["missed"])
