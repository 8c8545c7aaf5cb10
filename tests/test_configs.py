"""Every committed YAML file loads with the loader its command uses: a config that no longer
matches its dataclass (a renamed or removed setting) fails here, not after an hour of work."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(path: str):
    from eval.compare import Comparison
    from finetune.config import TrainConfig
    from finetune.preference import PreferenceConfig
    from human_ratings.pairs import load_systems
    from storygen.config import load_config
    from study.config import StudyConfig
    from study.feedback import FeedbackConfig

    name = Path(path).name
    if path.startswith("eval/"):
        return Comparison.load(ROOT / path)
    if name == "study.yaml":  # a human study's folder (human_ratings study new)
        from human_ratings.study import StudyConfig as HumanStudy
        from storygen.config import read_yaml

        return HumanStudy.from_dict(read_yaml(ROOT / path))
    if path.startswith("finetune/mix_"):
        from finetune.data import read_mix

        return read_mix(ROOT / path, check_files=False)  # its data lives outside the project
    if name == "train_config.yaml" or path.startswith("finetune/"):
        return TrainConfig.load(ROOT / path)
    if name == "preference_config.yaml":
        return PreferenceConfig.load(ROOT / path)
    if path == "human_ratings/demo_systems.yaml":
        return load_systems(ROOT / path)
    if path.startswith("study/feedback"):
        return load_config(FeedbackConfig, ROOT / path)
    if path.startswith("study/"):
        return StudyConfig.load(ROOT / path)
    raise AssertionError(f"{path}: no loader is known for this config; add it here")


COMMITTED = subprocess.run(
    ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True
).stdout.split()


@pytest.mark.skipif(not COMMITTED, reason="not a git checkout")
@pytest.mark.parametrize("path", COMMITTED)
def test_every_committed_config_loads(path):
    assert _load(path) is not None
