"""A study's votes and reactions as Parquet with a dataset card:

    python -m human_ratings export STUDY_DIR --out DIR [--real-ids]

``DIR`` gets ``votes.parquet``, ``reactions.parquet`` (when there are any) and ``README.md``, a
dataset card that ``datasets.load_dataset("parquet", data_files=...)`` and the Hub read.
Annotators are pseudonymised (an HMAC of their id under a key kept in the study folder, the
same pseudonym in every export of that study) unless ``--real-ids`` is given. Vote rows keep
every column of the vote log, gold items included (``gold`` says which), and ``excluded``
says whether the study's rule leaves the annotator out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from human_ratings.identity import pseudonym
from human_ratings.reactions import ReactionLog
from human_ratings.store import Vote


def export(study, out: Path, real_ids: bool = False) -> dict[str, int]:
    """Write the study's votes (and reactions) to ``out``; returns the row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    key = study.key

    def who(name: str) -> str:
        return name if real_ids else pseudonym(key, name)

    excluded = study.excluded()
    votes = study.votes(with_gold=True)
    columns = [f.name for f in fields(Vote)]
    rows = []
    for v in votes:
        row = asdict(v)
        row["annotator"] = who(v.annotator)
        row["gold"] = v.item_id in study.gold
        row["excluded"] = v.annotator in excluded
        rows.append(row)
    schema = pa.schema(
        [
            (
                c,
                pa.int64()
                if c in INT
                else pa.float64()
                if c == "seconds"
                else pa.bool_()
                if c in BOOL
                else pa.string(),
            )
            for c in columns
        ]
        + [("gold", pa.bool_()), ("excluded", pa.bool_())]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "votes.parquet")
    reactions_path = study.folder / "reactions.jsonl"
    reactions = ReactionLog(reactions_path).read_all() if reactions_path.exists() else []
    if reactions:
        table = [
            {
                "kind": r.kind,
                "story": r.story,
                "edited": r.edited,
                "system": r.system,
                "provenance": json.dumps(r.provenance, sort_keys=True),
                "reader": who(r.reader) if r.reader else "",
                "timestamp_utc": r.timestamp_utc,
            }
            for r in reactions
        ]
        pq.write_table(pa.Table.from_pylist(table), out / "reactions.parquet")
    (out / "README.md").write_text(card(study, len(rows), len(reactions), real_ids))
    return {"votes": len(rows), "reactions": len(reactions)}


INT = {
    f.name for f in fields(Vote) if "int" in str(f.type) and f.name not in ("replaces", "anonymous")
}
BOOL = {"replaces", "anonymous"}


def card(study, votes: int, reactions: int, real_ids: bool) -> str:
    """The dataset card: front matter the Hub reads, and what the columns mean."""
    configs = ["  - config_name: votes", "    data_files: votes.parquet"]
    if reactions:
        configs += ["  - config_name: reactions", "    data_files: reactions.parquet"]
    systems = sorted({s for it in study.items for s in it.stories})
    return "\n".join(
        [
            "---",
            "configs:",
            *configs,
            "license: cc-by-4.0",
            "---",
            "",
            f"# Votes of the study `{study.name}`",
            "",
            f"{votes} votes (gold items included; `gold` marks them) and {reactions} readers' "
            f"reactions, blind A/B judgements of stories written for the same request by "
            f"{', '.join(systems)}; k = {study.config.k} votes wanted per item.",
            "",
            "Annotators are "
            + (
                "named by their ids."
                if real_ids
                else "pseudonymised (the same pseudonym in every export of this study)."
            ),
            "`excluded` marks annotators the study's quality rule leaves out "
            f"({json.dumps(asdict(study.config.exclusion))}).",
            "`seconds` is the time from the item's being shown to the vote, measured by the "
            "server; `anonymous` marks votes of an open study's unnamed visitors.",
            "",
            "```python",
            "from datasets import load_dataset",
            'votes = load_dataset("parquet", data_files="votes.parquet")["train"]',
            "```",
            "",
        ]
    )
