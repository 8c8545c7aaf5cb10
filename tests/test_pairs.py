"""A/B items: stable ids, and systems the arena can run."""

import hashlib
import json
from dataclasses import replace

import pytest

from human_ratings.pairs import PairsError, item_id, load_systems
from storygen.request import Character, StoryRequest


def test_item_ids_of_requests_without_an_arc_are_the_ids_made_before_arcs_existed():
    request = StoryRequest(genre="mystery", characters=[Character("Mara", ["kind"])])
    before = {k: v for k, v in request.to_dict().items() if k != "arc"}  # the old to_dict
    key = json.dumps(before, sort_keys=True) + "|7"
    assert item_id(request, 7) == hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    assert item_id(replace(request, arc="tragedy"), 7) != item_id(request, 7)
    assert item_id(request, 8) != item_id(request, 7)


def test_the_arena_refuses_a_system_that_plans_first(tmp_path):
    path = tmp_path / "systems.yaml"
    path.write_text("systems:\n  - {name: a, adapter: none}\n  - {name: b, adapter: none}\n")
    assert [s.name for s in load_systems(path)] == ["a", "b"]
    path.write_text("systems:\n  - {name: a, adapter: none}\n  - {name: b, plan: model}\n")
    with pytest.raises(PairsError, match="'b' has plan: model"):
        load_systems(path)
    path.write_text("systems:\n  - {name: a, plan: sometimes}\n  - {name: b}\n")
    with pytest.raises(PairsError, match="plan must be one of none, model, reference"):
        load_systems(path)


def test_the_arena_finds_a_tuned_adapters_parent_as_it_was_given_to_tune(tmp_path):
    """A committed child of the demo adapter names its parent "demo", which loads on any
    machine; the folder it was read from (an absolute path on the tuning machine) is the
    fallback for lineages written before. If "demo" no longer loads the weights the child was
    tuned from (the demo adapter retrained in place), the arena refuses."""
    from human_ratings.pairs import arena_systems
    from storygen.config import demo_adapter_dir
    from storygen.loading import weights_sha256

    child = tmp_path / "kid"
    child.mkdir()
    (child / "adapter_config.json").write_text("{}")
    lineage = {"parent": "smollm2-135m-wp-demo", "parent_dir": "/gone/smollm2-135m-wp-demo"}
    for given, parent in (({"parent_adapter": "demo"}, "demo"), ({}, lineage["parent_dir"])):
        meta = {"name": "kid", "lineage": {**lineage, **given}}
        (child / "storygen_adapter.json").write_text(json.dumps(meta))
        systems = arena_systems(child)
        assert [(s.name, s.model.adapter) for s in systems] == [
            ("smollm2-135m-wp-demo", parent),
            ("kid", str(child)),
        ]
    demo = {"parent_adapter": "demo", "parent_sha256": weights_sha256(demo_adapter_dir())}
    (child / "storygen_adapter.json").write_text(json.dumps({"lineage": {**lineage, **demo}}))
    assert arena_systems(child)[0].model.adapter == "demo"
    demo["parent_sha256"] = "0" * 64
    (child / "storygen_adapter.json").write_text(json.dumps({"lineage": {**lineage, **demo}}))
    with pytest.raises(PairsError, match="'demo' .* is not the adapter it was tuned from"):
        arena_systems(child)


def test_sides_are_swapped_about_half_the_time():
    """A/B sides are random per viewing: each system is on the left about half the time (a
    side that never swapped would hide position bias)."""
    import random

    from human_ratings.pairs import Item, assign_sides
    from storygen.request import StoryRequest

    item = Item("x", StoryRequest(genre="horror"), {"tuned": {}, "base": {}})
    rng = random.Random(3)
    lefts = [assign_sides(item, rng)[0] for _ in range(1000)]
    assert set(lefts) == {"tuned", "base"}
    assert 0.45 < lefts.count("base") / 1000 < 0.55
    assert all(sorted(assign_sides(item, rng)) == ["base", "tuned"] for _ in range(20))
