"""A scripted study through the real app, in its own process, killed and restarted midway.

    python -m bench.study_sim [--items 30] [--k 3] [--careful 8] [--json OUT]

Three systems (``alpha`` better than ``beta`` better than ``gamma``: Bradley-Terry strengths
+gap, 0, -gap, ``--gap`` 1 by default) wrote the stories of an invite-only study with gold
items. Twelve annotators sign in with their codes over gradio_client:

- 8 careful ones read (they wait ``--read-s`` per item) and prefer a system with the
  probability its true strength gives (a noisy reader), and the intact story of a gold item 9
  times in 10;
- 4 careless ones: two answer at random, one always says "A", one answers too fast.

The simulated readers know which system wrote a story from the study's own items file (they
stand in for people reading); the app does not tell them. Halfway the app gets SIGKILL and is
started again. At the end the study's log must show: every item with k or k+1 votes; at least
3 of the 4 careless annotators excluded by the study's rule and at most 1 careful one; the
Bradley-Terry order without the excluded equal to the true order; every acknowledged vote
(its receipt) in the log exactly once.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import tempfile
import threading
import time
from pathlib import Path

from bench.app_serving import start_app

STRENGTH = {"alpha": 1.0, "beta": 0.0, "gamma": -1.0}  # times --gap
RECEIPT = re.compile(r"receipt `([0-9a-f]+)`")
CHOICES = ["A is better", "B is better", "Tie", "Both are bad"]


def make_items(path: Path, n: int) -> None:
    """``n`` items, every pair of systems equally often, each story a few distinct sentences."""
    names = sorted(STRENGTH)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    rows = []
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        stories = {
            s: {
                "text": " ".join(
                    f"In story {i} by {s}, sentence {j} moves the tale along." for j in range(6)
                ),
                "provenance": {},
            }
            for s in (a, b)
        }
        rows.append({"item_id": f"item{i}", "request": {"genre": "mystery"}, "stories": stories})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def reader(
    kind: str, rng: random.Random, who_wrote: dict, gold: dict, a: str, b: str, gap: float = 1.0
) -> str:
    """The choice a simulated annotator of this kind makes for stories A and B."""
    if kind == "random" or kind == "fast":
        return rng.choice(CHOICES)
    if kind == "always_a":
        return "A is better"
    if (a, b) in gold:  # a gold item: the intact story, 9 times in 10
        better = gold[(a, b)]
        right = "A is better" if better == a else "B is better"
        return right if rng.random() < 0.9 else rng.choice(CHOICES)
    sa, sb = gap * STRENGTH[who_wrote[a]], gap * STRENGTH[who_wrote[b]]
    return "A is better" if rng.random() < 1 / (1 + math.exp(sb - sa)) else "B is better"


def annotate(url_of, code, kind, read_s, seed, acked, errors, stop, down, gap):
    from gradio_client import Client

    rng = random.Random(seed)
    who_wrote, gold = url_of["who_wrote"], url_of["gold"]
    client = None
    while not stop.is_set():
        try:
            if client is None:
                while down.is_set():
                    time.sleep(0.2)
                client = Client(url_of["url"], verbose=False)
                shown = client.predict(code, "", api_name="/start_rating")
            if not shown[1]:
                return  # nothing needs this annotator any more
            time.sleep(read_s * (0.8 + 0.4 * rng.random()))
            choice = reader(kind, rng, who_wrote, gold, shown[1], shown[2], gap)
            res = client.predict(choice, "", *[None] * 8, api_name="/vote")
            got = RECEIPT.search(res[-1] or "")
            if got:
                acked.append((code, got.group(1)))
            shown = client.predict(api_name="/next_item")
        except Exception as exc:  # noqa: BLE001 - the kill cuts requests off: start again
            if not down.is_set():
                errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
            client = None
            time.sleep(0.5)


def run(
    items: int = 30,
    k: int = 3,
    careful: int = 8,
    read_s: float = 2.0,
    seed: int = 0,
    timeout: float = 900,
    gap: float = 1.0,
) -> dict:
    import yaml

    from human_ratings.stats import bradley_terry
    from human_ratings.study import Study, new_study

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_items(d / "items.jsonl", items)
        study = new_study(d / "study", d / "items.jsonl", k=k, gold=min(items, 12), seed=seed)
        cfg = yaml.safe_load((d / "study" / "study.yaml").read_text())
        cfg["gold"]["rate"] = 0.3
        cfg["exclusion"].update(min_median_seconds=read_s / 3, min_gold=2, min_votes=4)
        (d / "study" / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        kinds = ["careful"] * careful + ["random", "random", "always_a", "fast"]
        names = [f"{kind}-{i}" for i, kind in enumerate(kinds)]
        codes = dict(study.invites.create(names))
        who_wrote = {
            s["text"]: name
            for line in (d / "items.jsonl").read_text().splitlines()
            for name, s in json.loads(line)["stories"].items()
        }
        gold = {}
        for line in (d / "study" / "gold.jsonl").read_text().splitlines():
            g = json.loads(line)
            texts = {name: s["text"] for name, s in g["stories"].items()}
            (a, b) = texts.values()
            better = texts[g["gold"]["better"]]
            gold[(a, b)] = gold[(b, a)] = better
        for a, b in list(gold):
            who_wrote.setdefault(a, "alpha")  # a shuffled story: never a non-gold item's
            who_wrote.setdefault(b, "alpha")
        log = d / "app.log"
        proc, url, start_s = start_app(
            d / "study" / "votes.csv", "--study", str(d / "study"), "--lazy", log=log
        )
        shared = {"url": url, "who_wrote": who_wrote, "gold": gold}
        acked, errors = [], []
        stop, down = threading.Event(), threading.Event()
        threads = [
            threading.Thread(
                target=annotate,
                args=(
                    shared,
                    codes[name],
                    kind,
                    0.05 if kind == "fast" else read_s,
                    seed * 100 + i,
                    acked,
                    errors,
                    stop,
                    down,
                    gap,
                ),
            )
            for i, (name, kind) in enumerate(zip(names, kinds, strict=True))
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        target = items * k
        killed = False
        while any(t.is_alive() for t in threads) and time.perf_counter() - t0 < timeout:
            time.sleep(0.5)
            if not killed and len(acked) >= target // 2:
                down.set()
                proc.kill()  # SIGKILL, halfway
                proc.wait()
                proc, url, _ = start_app(
                    d / "study" / "votes.csv", "--study", str(d / "study"), "--lazy", log=log
                )
                shared["url"] = url
                down.clear()
                killed = True
        stop.set()
        for t in threads:
            t.join(timeout=60)
        proc.terminate()
        proc.wait()
        final = Study(d / "study")
        from human_ratings.store import receipt

        votes = final.votes(with_gold=True)
        keys = [(v.annotator, v.item_id) for v in votes]
        stored = {(codes[v.annotator], receipt(final.key, v.annotator, v.item_id)) for v in votes}
        counts = final.assigner.votes_per_item()
        status = final.status()
        excluded = set(status["excluded"])
        careless = [n for n, kind in zip(names, kinds, strict=True) if kind != "careful"]
        kept = [v for v in final.votes() if v.annotator not in excluded]
        scores = bradley_terry(kept)
        order = sorted(scores, key=scores.get, reverse=True)
        return {
            "seconds": round(time.perf_counter() - t0, 1),
            "start_s": round(start_s, 1),
            "votes": len(votes),
            "acknowledged": len(acked),
            "lost": len(set(acked) - stored),
            "duplicates": len(keys) - len(set(keys)),
            "killed_midway": killed,
            "votes_per_item": sorted(set(counts.values())),
            "every_item_k_or_k_plus_1": all(k <= c <= k + 1 for c in counts.values()),
            "careless_excluded": sum(n in excluded for n in careless),
            "careful_excluded": sum(n in excluded for n in excluded if n not in careless),
            "excluded": {n: status["annotators"][n]["excluded"] for n in sorted(excluded)},
            "random_kept": {
                n: {k: status["annotators"][n][k] for k in ("votes", "gold_seen", "gold_passed")}
                for n in careless
                if n not in excluded
            },
            "order": order,
            "true_order_recovered": order == sorted(STRENGTH, key=STRENGTH.get, reverse=True),
            "bt_scores": {s: round(v, 3) for s, v in scores.items()},
            "decisions": [
                (x["a"], x["b"], x["decision"], round(x["win_rate"], 2))
                for x in status["decisions"]
            ],
            "client_errors": len(errors),
            "error_samples": errors[:3],
            "app_tracebacks": log.read_text(errors="replace").count("Traceback"),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=30)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--careful", type=int, default=8)
    p.add_argument("--read-s", type=float, default=2.0, help="careful readers' seconds per item")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gap",
        type=float,
        default=1.0,
        help="strength between neighbouring systems (1: a careful reader prefers the better "
        "of two neighbours 73%% of the time, 2: 88%%)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    r = run(args.items, args.k, args.careful, args.read_s, args.seed, gap=args.gap)
    for key, value in r.items():
        print(f"{key:>26}: {value}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    ok = (
        r["lost"] == 0
        and r["duplicates"] == 0
        and r["every_item_k_or_k_plus_1"]
        and r["careless_excluded"] >= 3
        and r["careful_excluded"] <= 1
        and r["true_order_recovered"]
        and r["app_tracebacks"] == 0
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
