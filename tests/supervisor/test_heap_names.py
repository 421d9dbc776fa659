"""`redleaf heap` names owners as people know them (echo#3, client:PID#N, supervisor#1) and
vector types by their element type (vec[uint8], not numpy's '|u1')."""

import json
import os
import subprocess
import sys

import numpy as np

from redleaf.supervisor.cli import _type_label


def test_type_labels():
    assert _type_label("vec[|u1]") == "vec[uint8]"
    assert _type_label("vec[<f8]") == "vec[float64]"
    assert _type_label("vec[>u4]") == "vec[uint32, big-endian]"
    assert _type_label("mymod.Block") == "mymod.Block"


def test_heap_names_owners_and_types(make_instance):
    inst = make_instance()
    with inst.attach() as d:
        v = d.heap.alloc_vec(np.uint8, 64)       # an object this client owns
        out = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "heap", "--json"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        stats = json.loads(out)
        mine = stats["domains"][str(d.domain_id)]
        assert mine["owner"] == f"client:{os.getpid()}#{d.domain_id}" and mine["objects"] >= 1
        assert "vec[uint8]" in stats["types"]
        table = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "heap"],
                               capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"client:{os.getpid()}#{d.domain_id}" in table and "OWNER" in table
        del v
