"""The longest-first ordering of the root conftest (xdist workers fed one test at a time)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _root_conftest():
    spec = importlib.util.spec_from_file_location("volbench_root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_the_longest_tests_start_first_one_per_worker_with_a_short_one_queued():
    order = _root_conftest().longest_first([_Item(n) for n in ("a", "b", "c", "d", "e", "f", "g")],
                                           {"b": 3.0, "d": 100.0, "f": 50.0, "g": 10.0}, workers=2)
    # Worker 0 gets [d, a], worker 1 [f, c]; then the other known ones longest first, then the rest.
    assert [it.nodeid for it in order] == ["d", "a", "f", "c", "g", "b", "e"]


def test_every_item_is_kept_exactly_once_whatever_the_file_says():
    items = [_Item(f"t{i}") for i in range(20)]
    durations = {"t3": 5.0, "t7": 9.0, "missing-test": 99.0}
    order = _root_conftest().longest_first(items, durations, workers=3)
    assert sorted(it.nodeid for it in order) == sorted(it.nodeid for it in items)
    assert order[0].nodeid == "t7" and order[2].nodeid == "t3"


def test_the_durations_file_is_seconds_by_node_id():
    data = json.loads((ROOT / ".test_durations").read_text())
    assert data and all("::" in k and isinstance(v, (int, float)) and v > 0 for k, v in data.items())
