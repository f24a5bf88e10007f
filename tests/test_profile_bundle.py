"""The bundle contract: round trip, and a clear error for every kind of damage."""

import json
import shutil

import pandas as pd
import pytest

from simqos.errors import SimqosError
from simqos.bundle import DENSE_BASELINE_LEVEL, load_profile, save_profile


@pytest.fixture
def bundle(tiny_profile_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_profile_dir, copy)
    return copy


def test_round_trip(tiny_profile_dir, tmp_path):
    p = load_profile(tiny_profile_dir)
    save_profile(p, tmp_path / "again")
    q = load_profile(tmp_path / "again")
    assert p.meta == q.meta
    for name in ("layers", "latency_samples", "kernels", "end_to_end", "routes"):
        pd.testing.assert_frame_equal(getattr(p, name), getattr(q, name), check_exact=False, rtol=1e-5)
    for f in ("layers.csv", "latency_samples.csv", "end_to_end.csv", "routes.csv", "profile.json"):
        assert (tiny_profile_dir / f).read_text() == (tmp_path / "again" / f).read_text(), f
    assert p.outcomes.routes == q.outcomes.routes and (p.outcomes.hits == q.outcomes.hits).all()


def test_the_routes_per_sample_outcomes_add_up_to_their_accuracies(tiny_profile_dir):
    """route_outcomes.npz holds every test route's hit on every test sample: summed, routes.csv's
    test counts (load_profile checks that too)."""
    p = load_profile(tiny_profile_dir)
    test = p.routes[p.routes["split"] == "test"].set_index("route")
    assert len(p.outcomes.routes) == len(test) and p.outcomes.hits.shape == (len(test), len(p.outcomes.units))
    for route, hits in zip(p.outcomes.routes, p.outcomes.hits):
        assert hits.sum() == test.loc["-".join(map(str, route)), "correct"]
    assert p.outcomes.units.sum() == test["n"].iloc[0]


def test_contents_follow_the_contract(tiny_profile_dir):
    p = load_profile(tiny_profile_dir)
    assert p.layer_names == ["fc1", "fc2", "out"]
    assert p.n_levels == 2 and p.n_segments == 3
    assert p.meta.reroute_after == ["fc1", "fc2"]
    assert p.meta.accuracy.available and p.meta.accuracy.routes_complete
    assert len(p.routes) == 2 * 2**3 and set(p.routes["split"]) == {"validation", "test"}
    assert {a.split for a in p.meta.accuracy.dense} == {"validation", "test"}
    assert set(p.end_to_end["level"]) == {DENSE_BASELINE_LEVEL, 0, 1}
    for layer in p.layer_names:
        for level in range(2):
            assert len(p.samples_ms(layer, level)) == 20
    chosen = p.kernels[p.kernels["status"] == "chosen"]
    merged = chosen.merge(p.layers, on=["layer", "level"])
    assert (merged["kernel_x"] == merged["kernel_y"]).all()
    # the chosen kernel is the fastest inside the model among the contenders compared there,
    # or, where only one kernel contended, the fastest exact one alone
    for _, group in p.kernels.groupby(["layer", "level"]):
        inside = group.dropna(subset=["in_model_median_ms"])
        pool, column = (inside, "in_model_median_ms") if len(inside) else (group.dropna(subset=["median_ms"]), "median_ms")
        assert pool.loc[pool[column].idxmin(), "status"] == "chosen"
    fc1 = p.layers[(p.layers["layer"] == "fc1")].sort_values("level")
    assert fc1["nnz"].tolist() == [round(0.6 * 64 * 32), round(0.3 * 64 * 32)]
    assert fc1["flops"].tolist() == [2 * n for n in fc1["nnz"]]  # batch 1, one use per weight
    # in-model samples: pass i's layer calls all happen inside pass i
    per_pass = p.latency_samples.groupby(["level", "sample"])["latency_ms"].sum()
    passes = p.end_to_end.set_index(["level", "sample"])["latency_ms"]
    assert (per_pass <= passes.loc[per_pass.index]).all()
    gap = p.end_to_end_gap()
    assert set(gap.columns) >= {"sum_of_layers_ms", "end_to_end_ms", "gap_ms", "ratio_to_dense"}
    prov = p.meta.provenance
    assert prov.settings.threads == 1 and prov.settings.batch_size == 1 and prov.dtype == "float32" and prov.settings.device == "cpu"


def test_a_bundle_rebuilds_its_network(tiny_profile_dir):
    """The recipe in the provenance is what `simqos validate` builds and runs: the profiled
    network itself (from the checkpoint cache, not trained again)."""
    from simqos.nested.masks import level_mask
    from simqos.profiler.recipe import build_network

    p = load_profile(tiny_profile_dir)
    recipe = p.meta.provenance.recipe
    assert recipe.model == "mlp" and recipe.model_kwargs == {"hidden": 32, "depth": 2} and recipe.densities == (0.6, 0.3)
    assert (recipe.training.epochs_dense, recipe.training.epochs_sparsest, recipe.training.epochs_grow) == (10, 10, 5)
    assert p.meta.provenance.settings.idle_samples == 4 and p.meta.provenance.settings.in_model_passes == 20
    built = build_network(recipe, on_epoch=lambda *_: pytest.fail("trained again"))
    net = built.net
    nnz = {(layer.name, k): sum(int(level_mask(net.ranks[w], k).sum()) for w in layer.weights) for layer in net.layers for k in range(2)}
    assert nnz == {(r.layer, r.level): r.nnz for r in p.layers.itertuples()}


def _edit_json(bundle, change):
    path = bundle / "profile.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_csv(bundle, name, change):
    path = bundle / name
    table = pd.read_csv(path, dtype={"layer": str, "route": str, "split": str})
    table = change(table)
    table.to_csv(path, index=False)


def _flip_an_outcome(bundle):
    from simqos.bundle import RouteOutcomes

    outcomes = RouteOutcomes.load(bundle / "route_outcomes.npz")
    hits = outcomes.hits.copy()
    hits[0, 0] = 1 - hits[0, 0]
    RouteOutcomes(outcomes.routes, hits, outcomes.units).save(bundle / "route_outcomes.npz")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda b: (b / "layers.csv").unlink(), "layers.csv: missing"),
        (lambda b: (b / "profile.json").write_text("{not json"), "not valid JSON"),
        (lambda b: _edit_json(b, lambda d: d.update(colour="red")), "colour: unknown key — profile.json takes accuracy, description,"),
        (lambda b: _edit_json(b, lambda d: d["levels"][1].update(density=0.9)), "must strictly decrease"),
        (lambda b: _edit_json(b, lambda d: d.update(schema_version=99)), "schema_version is 99"),
        (lambda b: _edit_json(b, lambda d: d["provenance"]["settings"].update(threads=0)), "provenance.settings.threads"),
        (lambda b: _edit_csv(b, "layers.csv", lambda t: t.assign(nnz=t["nnz"] * (1 + 3 * t["level"]))), "not nested"),
        (lambda b: _edit_csv(b, "layers.csv", lambda t: t.iloc[1:]), "one row per layer x level"),
        (lambda b: _edit_csv(b, "latency_samples.csv", lambda t: t.assign(latency_ms=-t["latency_ms"])), "latency_ms"),
        (lambda b: _edit_csv(b, "latency_samples.csv", lambda t: t.rename(columns={"latency_ms": "ms"})), "columns are"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t.assign(route="0-5")), "route '0-5'"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t.assign(accuracy=0.123)), "is not correct/n"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t[t["route"] != "0-1-1"]), "missing e.g. ['0-1-1']"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t[t["split"] != "test"]), "needs the test split"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t.assign(split="training")), "split 'training'"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: pd.concat([t, t.iloc[:1]])), "appear more than once"),
        (lambda b: _edit_csv(b, "routes.csv", lambda t: t.assign(ci_high=t["accuracy"] / 2)), "must hold accuracy"),
        (lambda b: (b / "routes.csv").unlink(), "accuracy is available"),
        (lambda b: _edit_csv(b, "end_to_end.csv", lambda t: t[t["level"] >= 0]), "dense baseline"),
        (lambda b: (b / "kernels.csv").write_bytes(b"\xff\xfe\x00garbage"), "kernels.csv"),
        (lambda b: (b / "route_outcomes.npz").write_bytes(b"garbage"), "not a route outcomes file"),
        (lambda b: _flip_an_outcome(b), "but routes.csv's test row says"),
    ],
)
def test_damage_is_named(bundle, damage, fragment):
    damage(bundle)
    with pytest.raises(SimqosError) as info:
        load_profile(bundle)
    assert fragment in str(info.value)
    assert str(bundle) in str(info.value)


def test_missing_folder():
    with pytest.raises(SimqosError, match="no such profile folder"):
        load_profile("does/not/exist")
