"""The feedback loop, simulated: a scripted annotator votes, the adapter is tuned on the votes,
and the tuned adapter is measured against its parent.

This is a simulation, not people: the annotator is an explicit, deterministic rule taken from
eval's metrics (it prefers the story that follows more of its request, by the validated judges
of :func:`eval.adherence.check`, counting all of the request's measured fields or only the
kinds named in ``rule_fields``; equal is a tie). It votes on A/B items made from the current
adapter, for the requests the rule can judge: ``samples`` stories per request (seeded), of
which the item shows the one the rule scores highest and the one it scores lowest (with two
samples, both).
Choosing the pair by an automatic metric is how a real arena would spend scarce votes on pairs
that differ; here the metric and the voter are the same rule, which a study with people would
not have. The loop then builds preference data from those votes (``finetune prefer``), tunes
the adapter with DPO (``finetune tune``), and on held-out requests compares child with parent
on the rule's own metric (the share of the judged fields followed, pooled over
``test_samples`` stories per request; paired, with its 95% interval) and on the perplexity of
held-out human stories.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval.adherence import FIELD_KINDS, check, field_kind, judged_fields
from eval.intervals import interval, paired_difference
from eval.metric import Figure, exp, ratio_of
from finetune.prefer import build_preferences
from finetune.preference import PreferenceConfig, tune
from human_ratings.pairs import Item, item_row
from human_ratings.store import Vote, VoteStore
from storygen.config import ModelSpec, SystemSpec, from_dict
from storygen.items import write_stories
from storygen.loading import LineageError, lineage_parent
from storygen.request import StoryRequest
from study.config import StudyError

ANNOTATOR = "scripted-adherence"
CHECK_SEED = 100_000
"""The check's run seed is the items' plus this, so its stories never reuse an item's seed."""
CONFIG_FILE = "feedback_config.json"
"""The round's settings, written when it starts; a later ``--check-only`` must match them."""


def judged(checks: dict[str, bool], fields=None) -> dict[str, bool]:
    """Of adherence checks, those the rule counts: all, or those of the kinds in ``fields``."""
    return {k: v for k, v in checks.items() if fields is None or field_kind(k) in fields}


def rule_checks(request: StoryRequest, story: str, fields=None) -> dict[str, bool]:
    """The adherence checks the rule counts for this story."""
    return judged(check(request, story), fields)


def adherence_of(request: StoryRequest, story: str, fields=None) -> float:
    """The share of the request's (judged) fields the story follows: the annotator's rule."""
    checks = rule_checks(request, story, fields)
    return sum(checks.values()) / len(checks) if checks else 0.0


def scripted_choice(item: Item, left: str, right: str, fields=None) -> str:
    """The rule's vote: the side whose story follows more of the request; a tie when equal."""
    a, b = (adherence_of(item.request, item.stories[s]["text"], fields) for s in (left, right))
    return "left" if a > b else "right" if b > a else "tie"


@dataclass
class FeedbackConfig:
    """One round of the simulated loop."""

    requests: str
    """JSONL of requests the A/B items are made from (the training side)."""
    test: str
    """A test set from ``finetune preprocess``: held-out requests and human stories."""
    adapter: str = "demo"
    """The current (parent) adapter."""
    base: str = "embedded"
    requests_limit: int = 100
    """A/B items are made from the first this many requests the rule can judge."""
    samples: int = 2
    """Stories written per request; the item holds the rule's best and worst of them."""
    rule_fields: list[str] | None = None
    """The kinds of request field the annotator counts (``character``, ``genre``, ...; see
    :data:`eval.adherence.FIELD_KINDS`); None counts every field the request sets. Requests
    that set none of them make no A/B item, and in the check get no stories (their human
    stories still count for perplexity)."""
    items_seed: int = 9000
    test_limit: int = 40
    test_samples: int = 1
    """Stories per held-out request and system in the check (the same seeds for both)."""
    sampling: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 200})
    tune: dict[str, Any] = field(default_factory=dict)
    """:class:`~finetune.preference.PreferenceConfig` fields (parent, base, data and output
    folders are the loop's)."""

    def __post_init__(self):
        for name, least in (("samples", 2), ("test_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{name} must be a whole number of at least {least}, got {value!r}"
                )
        if self.rule_fields is not None:
            fields = self.rule_fields
            if (
                not isinstance(fields, list | tuple)
                or not fields
                or not set(map(str, fields)) <= set(FIELD_KINDS)
            ):
                raise ValueError(
                    f"rule_fields must be a list of kinds among {', '.join(FIELD_KINDS)}; got "
                    f"{fields!r}"
                )
            # One name per rule, whatever the order or repeats it was written with.
            self.rule_fields = [k for k in FIELD_KINDS if k in fields]

    @property
    def rule(self) -> str:
        fields = (
            "every field"
            if self.rule_fields is None
            else " and ".join(self.rule_fields) + " fields"
        )
        return f"higher request adherence wins, counting {fields}; equal is a tie"

    @property
    def annotator(self) -> str:
        return ANNOTATOR + ("" if self.rule_fields is None else ":" + "+".join(self.rule_fields))

    def judges(self, request: StoryRequest) -> bool:
        """Whether the rule has a field of this request to judge."""
        return bool(judged({k: False for k in judged_fields(request)}, self.rule_fields))


def extreme_pair(request: StoryRequest, stories: dict[str, dict], fields=None) -> dict[str, dict]:
    """Of several stories (name -> {"text", ...}), the one the rule scores lowest and the one it
    scores highest (on ties, the first written and the last written), in name order."""
    ranked = sorted(stories, key=lambda name: adherence_of(request, stories[name]["text"], fields))
    return {name: stories[name] for name in sorted({ranked[0], ranked[-1]})}


def run_feedback(
    cfg: FeedbackConfig, out: Path, progress: bool = True, check_only: bool = False
) -> dict[str, Any]:
    """Run one round into ``out``; returns (and writes) ``feedback.json``. ``check_only`` runs
    the child/parent check again on a finished round's tuned adapter (the same seeds, so the same
    stories), leaving its votes, preference data and adapter as they are."""
    from human_ratings.pairs import load_requests
    from storygen.backends import load_backend

    tuned_dir = out / "tuned"
    recorded = json.loads(json.dumps(asdict(cfg)))
    if check_only:
        if not (tuned_dir / "metrics.json").exists():
            raise StudyError(f"{out} holds no tuned adapter to check; run the round first")
        _same_round(cfg, recorded, out)
        report = json.loads((out / "prefer" / "report.json").read_text())
        metrics = json.loads((tuned_dir / "metrics.json").read_text())
    elif (out / "votes.csv").exists():
        # The vote log only grows, so a second round here would mix its votes with the first's.
        raise StudyError(f"{out} holds a round already (votes.csv); choose another --out")
    else:
        requests = [r for r in load_requests(Path(cfg.requests)) if cfg.judges(r)]
        requests = requests[: cfg.requests_limit]
        if not requests:
            raise StudyError(
                f"{cfg.requests}: no request sets a field the rule counts ({cfg.rule})"
            )
    out.mkdir(parents=True, exist_ok=True)
    if not check_only:
        (out / CONFIG_FILE).write_text(json.dumps(recorded, indent=2) + "\n")
    # Stories on the default engine (llama.cpp for the embedded GGUF base); perplexity on
    # transformers in fp32, which it needs.
    spec = ModelSpec(base=cfg.base, adapter=cfg.adapter)
    parent = load_backend(spec)
    if not check_only:
        _vote(cfg, parent, requests, out, progress)
        # Preference data and DPO from the current adapter.
        report = build_preferences(
            out / "prefer",
            out / "votes.csv",
            [out / "items.jsonl"],
            prompt_format=parent.prompt_format,
        ).to_dict()
        settings = {
            **cfg.tune,
            "parent": cfg.adapter,
            "base": cfg.base,
            "data_dir": str(out / "prefer"),
            "output_dir": str(tuned_dir),
            "method": "dpo",
        }
        metrics = tune(from_dict(PreferenceConfig, settings, "feedback: tune"), progress)
    child = load_backend(replace_adapter(spec, tuned_dir))
    rows = _check(cfg, {"parent": (parent, cfg.adapter), "child": (child, tuned_dir)}, progress)
    # The share of the judged fields followed, pooled over stories (as eval's adherence); and
    # of the request's other fields, to show what a rule on some fields did to the rest.
    rule = Figure("adherence", ratio_of("hits", "asked"), "asked")
    others = Figure("adherence_other_fields", ratio_of("other_hits", "other_asked"), "other_asked")
    ppl = Figure("token_ppl", ratio_of("nll", "tokens", exp), "tokens")
    votes = VoteStore(out / "votes.csv").votes()
    result = {
        "simulation": f"a scripted annotator ({cfg.rule}), not people",
        "annotator": cfg.annotator,
        "config": recorded,  # as feedback_config.json holds it
        "votes": {c: sum(v.choice == c for v in votes) for c in ("left", "right", "tie")},
        "preference_data": report,
        "tune": metrics,
        "held_out_items": len(rows["parent"]),
        "judged_items": sum(r["asked"] is not None for r in rows["parent"]),
        "adherence": {n: rule.of(r) for n, r in rows.items()},
        "adherence_ci95": {n: interval(rule, r) for n, r in rows.items()},
        "adherence_difference": paired_difference(rule, rows["parent"], rows["child"]),
        "adherence_other_fields": {n: others.of(r) for n, r in rows.items()},
        "adherence_other_fields_difference": paired_difference(
            others, rows["parent"], rows["child"]
        ),
        "token_ppl": {n: ppl.of(r) for n, r in rows.items()},
    }
    result["ppl_change"] = result["token_ppl"]["child"] / result["token_ppl"]["parent"] - 1
    lo = result["adherence_difference"]["ci95"][0]
    result["rule_metric_rose"] = bool(lo > 0)
    result["ppl_within_5_percent"] = bool(result["ppl_change"] <= 0.05)
    with (out / "per_item.jsonl").open("w") as f:
        for name, rs in rows.items():
            f.writelines(json.dumps({"system": name, **r}) + "\n" for r in rs)
    (out / "feedback.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _same_round(cfg: FeedbackConfig, recorded: dict, out: Path) -> None:
    """Refuse to check a round with other settings than it ran with, or whose parent adapter is
    no longer the one its child was tuned from: the figures would mix two experiments."""
    saved_path = out / CONFIG_FILE
    if not saved_path.exists():
        raise StudyError(f"{out} has no {CONFIG_FILE}: the round's settings are unknown")
    saved = json.loads(saved_path.read_text())
    differ = sorted(k for k in saved.keys() | recorded.keys() if saved.get(k) != recorded.get(k))
    if differ:
        raise StudyError(
            f"{out} ran with other settings than this config ({', '.join(differ)}); check it "
            f"with the config it ran with"
        )
    try:
        lineage_parent(out / "tuned", cfg.base)
    except LineageError as exc:
        raise StudyError(str(exc)) from exc


def _vote(cfg: FeedbackConfig, parent, requests, out: Path, progress: bool) -> None:
    """A/B items from the current adapter, the rule's best and worst of ``samples`` seeds per
    request, and the scripted votes, into ``items.jsonl`` and ``votes.csv``."""
    store = VoteStore(out / "votes.csv")
    system = SystemSpec("parent", sampling=cfg.sampling)
    stories_of: dict[int, dict[str, dict]] = {}
    for w in write_stories(
        parent, system, requests, cfg.items_seed, cfg.samples, progress=progress
    ):
        stories_of.setdefault(w.index, {})[f"seed-{w.seed}"] = w.as_story()
    with (out / "items.jsonl").open("w") as f:
        for i, request in enumerate(requests):
            stories = extreme_pair(request, stories_of[i], cfg.rule_fields)
            item = Item(f"sim-{i}", request, stories)
            f.write(json.dumps(item_row(item)) + "\n")
            left, right = sorted(stories)
            choice = scripted_choice(item, left, right, cfg.rule_fields)
            store.append(Vote(cfg.annotator, item.item_id, left, right, choice))


def _check(cfg: FeedbackConfig, systems: dict, progress: bool) -> dict[str, list[dict]]:
    """Per system (name -> (backend, adapter)), one row per held-out item: the perplexity of its
    human story, and for a request the rule judges, the judged and the other fields followed by
    ``test_samples`` stories (the same seeds for every system)."""
    from eval.compare import load_test_set
    from eval.perplexity import story_nll
    from storygen.loading import load_model

    items = load_test_set(Path(cfg.test), cfg.test_limit)
    requests = [it["request"] for it in items]
    system = SystemSpec("check", sampling=cfg.sampling)
    rows: dict[str, list[dict]] = {}
    for name, (backend, adapter) in systems.items():
        lm = load_model(ModelSpec(base=cfg.base, adapter=str(adapter), quantization="fp32"))
        rows[name] = []
        for i, it in enumerate(tqdm(items, desc=f"check: {name}", disable=not progress)):
            request = it["request"]
            nll = story_nll(lm.model, lm.tokenizer, backend.prompt(request).text, it["reference"])
            row = {"id": it["id"], "hits": None, "asked": None, "nll": nll.nll}
            row["tokens"] = nll.tokens
            if cfg.judges(request):
                row.update(hits=0, asked=0, other_hits=0, other_asked=0)
                todo = [(i, k) for k in range(cfg.test_samples)]
                written = list(
                    write_stories(
                        backend,
                        system,
                        requests,
                        CHECK_SEED + cfg.items_seed,
                        cfg.test_samples,
                        todo=todo,
                        progress=False,
                    )
                )
                row["seeds"] = [w.seed for w in written]
                for w in written:
                    checks = check(request, w.text)
                    counted = judged(checks, cfg.rule_fields)
                    row["hits"] += sum(counted.values())
                    row["asked"] += len(counted)
                    row["other_hits"] += sum(checks.values()) - sum(counted.values())
                    row["other_asked"] += len(checks) - len(counted)
            rows[name].append(row)
    return rows


def replace_adapter(spec: ModelSpec, adapter) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, adapter=str(adapter))
