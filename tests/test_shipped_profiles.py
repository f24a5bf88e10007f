"""Every bundle under profiles/ loads, validates, and says how to reproduce it."""

from pathlib import Path

import pytest

from simqos.profile import load_profile

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
BUNDLES = sorted(p for p in PROFILES.iterdir() if (p / "profile.json").exists())


def test_profiles_are_shipped():
    assert {p.name for p in BUNDLES} >= {"mlp-cpu", "cnn-cpu"}


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_shipped_profile_is_valid_and_documented(folder):
    p = load_profile(folder)
    assert p.meta.provenance.command.startswith("simqos profile")
    assert f"profiles/{folder.name}" in (PROFILES / "README.md").read_text()
    if p.meta.accuracy.available:
        test = p.routes[p.routes["split"] == "test"]
        assert test["n"].min() >= 500 and p.meta.accuracy.routes_complete
    # the sparsest level is the fastest end to end and, except on the GATs, beats dense (there edge
    # softmax and aggregation dominate and the weights save nothing: profiles/README.md says so)
    gap = p.end_to_end_gap().set_index("level")
    assert gap.loc[p.n_levels - 1, "end_to_end_ms"] < gap.loc[0, "end_to_end_ms"]
    if not folder.name.startswith("gat"):
        assert gap.loc[p.n_levels - 1, "end_to_end_ms"] < p.dense_end_to_end_ms
