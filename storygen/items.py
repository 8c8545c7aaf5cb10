"""Stories for requests × systems: the one place that writes them, with one seed rule.

Evaluation (``eval compare``), A/B items (``human_ratings pairs``/``arena``), the feedback loop
and the app's live items all write their stories here, so that "the same seeds" means the same
thing everywhere.

**Seed rule.** In a run whose seed is ``seed``, sample ``k`` (of ``samples``) of request ``i``
is written with seed ``seed + i * samples + k`` (modulo 2**63), whatever the system: every
system writes request ``i``'s stories on the same seeds, and one request's samples never share
a seed with another's. A system that plans first plans with the story's seed; a best-of-n
system (``attempts``) writes its attempts on that seed plus 0 .. n-1, so its first attempt is
the story the same system with one attempt writes.

Every story keeps its provenance (:func:`storygen.generation.stream_story`: engine, weights,
sampling with the seed, request, plan, timing) and, here, the plan it was written from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from storygen.config import SystemSpec
from storygen.prompt_format import V1
from storygen.request import Plan, RequestError, StoryRequest

SEED_MODULUS = 2**63


def story_seed(seed: int, index: int, sample: int = 0, samples: int = 1) -> int:
    """The seed of sample ``sample`` of request ``index`` in a run seeded ``seed``."""
    if not 0 <= sample < samples:
        raise ValueError(f"sample {sample} is not one of {samples} samples")
    return (seed + index * samples + sample) % SEED_MODULUS


@dataclass
class Written:
    """One story written for one request by one system."""

    system: str
    index: int
    """The request's position in the run."""
    sample: int
    seed: int
    text: str
    plan: Plan | None
    """The plan the story follows (``plan: model`` or ``reference`` systems), else None."""
    plan_error: str | None
    """Why a ``plan: model`` system wrote without a plan (the model wrote none usable)."""
    provenance: dict[str, Any]

    def as_story(self) -> dict[str, Any]:
        """The story as an A/B item holds it."""
        return {"text": self.text, "provenance": self.provenance}


def for_format(request: StoryRequest, version: str) -> StoryRequest:
    """The request as a model of prompt format ``version`` can be asked it: a version-1
    adapter has no arc field, so it is asked without the arc (and judged on it like any other
    system: it was simply never told)."""
    return replace(request, arc="") if version == V1 and request.arc else request


def write_one(
    backend,
    system: SystemSpec,
    request: StoryRequest,
    seed: int,
    reference_plan: Plan | None = None,
    index: int = 0,
    sample: int = 0,
) -> Written:
    """One story of ``system`` (its sampling, with ``seed``) on its loaded ``backend``. A
    ``plan: model`` system plans first with the same seed (no usable plan: it writes without,
    and says why); ``plan: reference`` writes from ``reference_plan``."""
    from storygen.generation import generate_plan, generate_story

    sampling = system.sampling_for(seed)
    request = for_format(request, backend.prompt_format)
    plan, plan_error = None, None
    if system.plan == "model":
        try:
            plan = generate_plan(backend, request, sampling)
        except RequestError as exc:
            plan_error = str(exc)
    elif system.plan == "reference":
        if reference_plan is None:
            raise RequestError({"plan": f"system {system.name!r} needs the item's plan"})
        plan = reference_plan
    if system.attempts > 1:
        from storygen.best_of import generate_best

        story = generate_best(backend, request, sampling, system.attempts, plan=plan)
    else:
        story = generate_story(backend, request, sampling, plan=plan)
    return Written(system.name, index, sample, seed, story.text, plan, plan_error, story.provenance)


def write_stories(
    backend,
    system: SystemSpec,
    requests: list[StoryRequest],
    seed: int,
    samples: int = 1,
    plans: list[Plan | None] | None = None,
    todo: Iterable[tuple[int, int]] | None = None,
    progress: bool = True,
    fresh_cache: bool = False,
) -> Iterator[Written]:
    """``samples`` stories per request by ``system`` on ``backend``, by the seed rule, in
    order; ``todo`` (pairs of request index and sample) writes only those. ``plans`` are the
    requests' reference plans. ``fresh_cache`` computes every story's prompt whole (timings
    then do not depend on the story before)."""
    from tqdm import tqdm

    jobs = (
        list(todo)
        if todo is not None
        else [(i, k) for i in range(len(requests)) for k in range(samples)]
    )
    for i, k in tqdm(jobs, desc=f"stories {system.name}", disable=not progress):
        if fresh_cache and hasattr(backend, "clear_cache"):
            backend.clear_cache()
        yield write_one(
            backend,
            system,
            requests[i],
            story_seed(seed, i, k, samples),
            plans[i] if plans else None,
            index=i,
            sample=k,
        )


def write_for_systems(
    systems: list[SystemSpec],
    requests: list[StoryRequest],
    seed: int,
    samples: int = 1,
    load: Callable | None = None,
    progress: bool = True,
) -> dict[str, list[Written]]:
    """Every system's stories for every request (system by system: one model in memory at a
    time), by the seed rule."""
    if load is None:
        from storygen.backends import load_backend as load
    out = {}
    for system in systems:
        backend = load(system.spec())
        try:
            out[system.name] = list(
                write_stories(backend, system, requests, seed, samples, progress=progress)
            )
        finally:
            if hasattr(backend, "close"):
                backend.close()
    return out
