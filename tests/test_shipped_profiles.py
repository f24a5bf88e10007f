"""Every bundle under profiles/ loads, validates, and says how to reproduce it."""

from pathlib import Path

import pytest

from simqos.bundle import load_profile

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
BUNDLES = sorted(p for p in PROFILES.iterdir() if (p / "profile.json").exists())


def test_profiles_are_shipped():
    assert {p.name for p in BUNDLES} >= {"mlp-cpu", "cnn-cpu"}


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_shipped_profile_is_valid_and_documented(folder):
    p = load_profile(folder)
    made = p.meta.provenance
    assert made.command.startswith(f"simqos profile {made.recipe.model} ")
    # the recipe that validate and the training benchmark rebuild from is this bundle's
    assert [round(d, 4) for d in made.recipe.densities] == [round(level.density, 4) for level in p.meta.levels]
    assert p.meta.model == made.recipe.model and p.meta.accuracy.scope == made.recipe.training.scope
    assert (p.idle is not None) == (made.settings.idle_samples > 0)
    if p.meta.accuracy.available:
        assert p.meta.accuracy.growth == made.recipe.training.growth
        assert list(p.meta.accuracy.keep_dense) == list(made.recipe.training.keep_dense)
    assert f"profiles/{folder.name}" in (PROFILES / "README.md").read_text()
    if p.meta.accuracy.available:
        test = p.routes[p.routes["split"] == "test"]
        assert test["n"].min() >= 500 and p.meta.accuracy.routes_complete
    # the sparsest level is the fastest end to end and beats dense
    gap = p.end_to_end_gap().set_index("level")
    assert gap.loc[p.n_levels - 1, "end_to_end_ms"] < gap.loc[0, "end_to_end_ms"]
    assert gap.loc[p.n_levels - 1, "end_to_end_ms"] < p.dense_end_to_end_ms


def test_levels_that_run_the_same_work_draw_the_same_latency():
    """resnet1d's first convolution is dense at both levels (same non-zeros, same kernel): the
    model pools its timings, so both levels draw identical work there; its sparse layers keep
    their own."""
    import numpy as np

    from simqos.sim.service import ServiceModel

    profile = load_profile(PROFILES / "resnet1d-cpu")
    model = ServiceModel.from_profile(profile)
    names = profile.layer_names
    conv1, sparse = model.sorted_samples_ms[names.index("conv1")], model.sorted_samples_ms[names.index("blocks.0.conv1")]
    assert np.array_equal(conv1[0], conv1[1]) and len(conv1[0]) == len(profile.samples_ms("conv1", 0)) * 2
    assert np.array_equal(sparse[0], np.sort(profile.samples_ms("blocks.0.conv1", 0)))
    assert np.array_equal(sparse[1], np.sort(profile.samples_ms("blocks.0.conv1", 1)))


@pytest.mark.parametrize("folder", [f for f in BUNDLES if load_profile(f).meta.accuracy.available], ids=lambda p: p.name)
def test_every_monotone_route_lies_between_its_levels(folder):
    """A request that starts on a less sparse level and switches to a sparser one scores
    between the two levels (within their 95 % intervals): the mechanism rerouting relies on."""
    routes = load_profile(folder).routes
    test = routes[routes["split"] == "test"].assign(levels=lambda d: d["route"].astype(str).str.split("-"))
    segments = len(test["levels"].iloc[0])
    uniform = [test[test["route"] == "-".join([str(k)] * segments)].iloc[0] for k in range(2)]
    low, high = min(u["ci_low"] for u in uniform), max(u["ci_high"] for u in uniform)
    monotone = test[test["levels"].map(lambda levels: [int(v) for v in levels] == sorted(int(v) for v in levels))]
    outside = monotone[(monotone["ci_high"] < low) | (monotone["ci_low"] > high)]
    assert outside.empty, f"{list(outside['route'])} lie outside [{low:.4f}, {high:.4f}]"
