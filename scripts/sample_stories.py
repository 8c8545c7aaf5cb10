"""The first stories a comparison wrote, per system, as Markdown: what the README shows.

    .venv/bin/python scripts/sample_stories.py runs/mix_compare --systems demo mix --n 3 \
        --label "demo=Reddit-only" "mix=mix (the default)"

The first ``n`` items of the comparison's test set, in its order (their seeds are the run's
first: seed, seed + 1, ...), each system's story for them as the comparison saved and scored
it: the first seeds tried, not chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval.readers import scored_stories  # noqa: E402
from storygen.prompt_format import request_fields  # noqa: E402
from storygen.request import StoryRequest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a comparison's --out folder")
    parser.add_argument("--systems", nargs="+", required=True)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument(
        "--label", nargs="*", default=[], help="SYSTEM=LABEL: how to name a system shown"
    )
    args = parser.parse_args()
    labels = dict(x.split("=", 1) for x in args.label)
    stories = {s: scored_stories(args.run, s) for s in args.systems}
    order = [
        json.loads(x)["id"]
        for x in (args.run / "per_item" / f"{args.systems[0]}.jsonl").read_text().splitlines()
        if x.strip()
    ]
    for n, item in enumerate(order[: args.n], 1):
        first = stories[args.systems[0]][item]
        seed = first["provenance"]["sampling"]["seed"]
        fields = request_fields(StoryRequest.from_dict(first["request"]))
        asked = "\n".join(f"- **{k}**: {v}" for k, v in fields.items())
        print(f"#### Request {n} (seed {seed})\n\n{asked}\n")
        for system in args.systems:
            row = stories[system][item]
            words = len(row["text"].split())
            stop = row["provenance"].get("stop_reason", "")
            name = labels.get(system, system)
            print(f"<details><summary><b>{name}</b>: {words} words, stopped by {stop}</summary>\n")
            print(row["text"].strip().replace("\n", "<br>\n") + "\n\n</details>\n")


if __name__ == "__main__":
    main()
