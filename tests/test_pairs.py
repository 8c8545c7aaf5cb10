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
