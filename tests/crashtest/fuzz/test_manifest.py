"""The manifest fuzzer (crashtest/fuzz/manifest.py): random and mutated manifests either
parse or raise ManifestError with a message; nothing else escapes the parser."""

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import manifest
from redleaf.crashtest.fuzz.tally import Tally
from redleaf.supervisor.manifest import parse_manifest

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False))
def test_generated_manifests_parse_or_are_refused_clearly(rng):
    tally = Tally("manifest", 0)
    category, text = manifest.gen_input(rng)
    manifest.check(text, category, tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=400))
def test_any_text_parses_or_is_refused_clearly(text):
    tally = Tally("manifest", 0)
    manifest.check(text, "text", tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


def test_the_unmutated_base_manifests_parse():
    # the mutations start from valid manifests, so a refusal is the mutation's doing
    rng = random.Random(5)
    for _ in range(50):
        parse_manifest(manifest.to_toml(manifest.base(rng)))


def test_run_counts_its_inputs_and_finds_nothing():
    r = manifest.run(500, seed=3)
    assert r["target"] == "manifest" and r["inputs"] == 500
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 500 and r["accepted"] > 0 and r["errors"]
