"""A fixed, strong reference in A/B studies: a project system against GPT-4's (or GPT-3.5's)
story for the same request.

    python -m study reference human_ratings/demo_systems.yaml --shared ../shared/data/writingprompts

The requests are those written from that model's stories in the labelled judge set
(``finetune/gold/judges/requests_written.jsonl``, the true parts); the model's story is read
from the shared folder (never copied into the repository); the system's is written now. The
fixed system is named after the model (``gpt-4``): say in the study that it is model-written.
"""

from __future__ import annotations

from pathlib import Path

from human_ratings.pairs import Item, PairsError, item_id
from storygen.config import SystemSpec
from storygen.request import StoryRequest

REFERENCE_WRITERS = {"gpt4": "gpt-4", "gpt35": "gpt-3.5-turbo"}


def reference_items(
    system: SystemSpec, shared: Path, writer: str = "gpt4", n: int = 20, seed: int = 7000
) -> list[Item]:
    """A/B items of a project system against a strong model's story for the same request: the
    requests written from that model's stories in the labelled judge set
    (``finetune/gold/judges/requests_written.jsonl``), the model's story read from the shared
    folder (never copied into the repository), the system's written now (seed ``seed + i``).
    The fixed system is named after the model (``gpt-4``): it is model-written."""
    from finetune.judge_set import GOLD, read_jsonl, shared_texts, system_request
    from storygen.items import story_seed, write_for_systems

    if writer not in REFERENCE_WRITERS:
        raise PairsError(f"a reference writer is one of {', '.join(REFERENCE_WRITERS)}")
    written = [
        w for w in read_jsonl(GOLD / "requests_written.jsonl") if w["id"].startswith(f"{writer}:")
    ]
    texts = shared_texts(shared, {w["id"] for w in written})
    chosen = [w for w in written if w["id"] in texts and (w.get("characters") or w.get("events"))][
        :n
    ]
    if not chosen:
        raise PairsError(f"no {writer} story of the judge set is in {shared}")
    requests = [StoryRequest.from_dict(system_request(w)) for w in chosen]
    ours = write_for_systems([system], requests, seed)[system.name]
    name = REFERENCE_WRITERS[writer]
    items = []
    for i, (w, request) in enumerate(zip(chosen, requests, strict=True)):
        stories = {
            name: {"text": texts[w["id"]].text, "provenance": {"writer": name, "source": w["id"]}},
            system.name: ours[i].as_story(),
        }
        items.append(Item(f"ref-{item_id(request, story_seed(seed, i))}", request, stories))
    return items


def heldout_requests(shared: Path, out: Path, n: int = 60) -> int:
    """A test set (``eval compare``'s form: id, request, completion) of ``n`` people-like
    requests whose prompts the demo adapter never trained on (``preprocess --hold-out``; the
    v3 adapter, trained before, saw most of them): those written from the held-out
    stories of the labelled judge set, with a genre, tone, ending, point of view and arc drawn
    as people leave some empty (``system_request``); each story as the reference."""
    import json

    from finetune.judge_set import GOLD, read_jsonl, shared_texts, system_request, unit
    from storygen.request import RequestError

    split = {s["id"]: s["split"] for s in read_jsonl(GOLD / "stories.jsonl")}
    written = [
        w
        for w in read_jsonl(GOLD / "requests_written.jsonl")
        if split.get(w["id"]) == "heldout" and (w.get("characters") or w.get("events"))
    ]
    texts = shared_texts(shared, {w["id"] for w in written})
    rows = []
    for w in sorted(written, key=lambda w: unit(w["id"], "bestof")):
        request = system_request(w)
        try:
            StoryRequest.from_dict(request)
        except RequestError:
            continue
        rows.append({"id": w["id"], "request": request, "completion": texts[w["id"]].text})
        if len(rows) == n:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)
