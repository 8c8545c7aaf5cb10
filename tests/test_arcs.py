"""Story structure: the arc of a story's emotional trajectory, its beats, and beat coverage,
on hand-made stories whose answer is known."""

import numpy as np
import pytest

from storygen.arcs import (
    MAX_BEAT_WORDS,
    SHAPES,
    WINDOWS,
    beat_coverage,
    content_words,
    extract_beats,
    fit_arc,
    shape,
    story_arc,
    trajectory,
)
from storygen.request import ARCS, BEAT_NAMES, MAX_BEAT, validate_plan
from storygen.text import sentences

GOOD = [
    "Mara laughed with joy in the warm sunny garden.",
    "Everything was wonderful and she felt loved and safe.",
    "Her friends brought gifts and happy songs.",
    "She smiled, proud and grateful for such a beautiful day.",
]
BAD = [
    "Then the storm destroyed her home and she wept in terror.",
    "Her brother died and she was alone, hurt and afraid.",
    "The cruel thieves stole everything and she felt hopeless misery.",
    "She screamed in pain, sick with grief and despair.",
]
# Fortune per window (+1 good, -1 bad) of each arc, with four windows of two sentences.
LEVELS = {
    "rags to riches": (-1, -1, 1, 1),
    "tragedy": (1, 1, -1, -1),
    "man in a hole": (1, -1, -1, 1),
    "icarus": (-1, 1, 1, -1),
    "cinderella": (-1, 1, -1, 1),
    "oedipus": (1, -1, 1, -1),
}


def story_of(levels):
    good, bad = iter(GOOD * 4), iter(BAD * 4)
    return " ".join(
        f"{next(good if v > 0 else bad)} {next(good if v > 0 else bad)}" for v in levels
    )


def test_the_six_shapes_are_the_requests_arcs_and_start_and_end_where_they_should():
    assert set(SHAPES) == set(ARCS)
    rises = {a for a in ARCS if shape(a, 50)[-1] > shape(a, 50)[0]}
    assert rises == {"rags to riches", "cinderella"}
    falls = {a for a in ARCS if shape(a, 50)[-1] < shape(a, 50)[0]}
    assert falls == {"tragedy", "oedipus"}
    assert np.argmin(shape("man in a hole", 51)) == 25 and np.argmax(shape("icarus", 51)) == 25


@pytest.mark.parametrize("arc", list(LEVELS))
def test_each_arc_is_found_in_a_story_made_to_follow_it(arc):
    story = story_of(LEVELS[arc])
    values = trajectory(story)
    assert values is not None and len(values) == WINDOWS
    assert np.all(np.sign(values) == np.sign(LEVELS[arc]))
    fit = story_arc(story)
    assert fit is not None and fit.arc == arc and fit.correlation > 0.85
    assert fit.scores[arc] == max(fit.scores.values())


def test_a_flat_or_short_story_has_no_arc():
    assert trajectory("Too short. Only two sentences here.") is None
    assert story_arc(" ".join(GOOD[:2])) is None
    flat = fit_arc(np.zeros(WINDOWS))
    assert flat.arc == "" and np.isnan(flat.correlation)
    # Small wiggles correlate with a shape but are no arc; the same wiggles scaled up are.
    wiggle = np.array([0.0, 0.23, 0.0, 0.2])
    assert fit_arc(wiggle).arc == "" and fit_arc(wiggle, min_range=0.2).arc == "cinderella"
    assert fit_arc(2 * wiggle).arc == "cinderella"
    # A weak fit is left out below the threshold, named above it.
    story = story_of(LEVELS["tragedy"])
    assert story_arc(story, minimum=1.01) is None and story_arc(story, minimum=0.5).arc == "tragedy"


def test_fit_is_pearson_correlation_with_each_shape():
    values = np.array([0.3, -0.2, 0.5, 0.1])
    fit = fit_arc(values)
    for arc, r in fit.scores.items():
        assert r == pytest.approx(np.corrcoef(values, shape(arc, 4))[0, 1], abs=1e-12)
    assert fit.arc == max(fit.scores, key=fit.scores.get)


def test_sentences_and_content_words():
    assert sentences('He ran. "Stop!" she cried… Then\nsilence') == [
        "He ran.",
        '"Stop!"',
        "she cried…",
        "Then",
        "silence",
    ]
    assert content_words("The old keeper didn't see the Lighthouse's light.") == [
        "old",
        "keeper",
        "didn't",
        "see",
        "lighthouse's",
        "light",
    ]


STORY = (
    "Mara kept the lighthouse on the cold northern island. "
    "Each night the lighthouse lamp turned over the black water. "
    "One winter a ship carrying her brother Jonah vanished in the fog. "
    "Mara searched the rocks and the shore for the lost ship. "
    "At midnight the lamp failed and the storm hid every star. "
    "Mara climbed the tower and lit the lamp with her own hands. "
    "The ship saw the light and turned away from the rocks. "
    "Jonah came ashore soaked and shaking but alive. "
    "By spring the island was quiet again. "
    "Mara and Jonah kept the lighthouse together after that."
)


def test_beats_are_one_central_sentence_from_each_fifth_in_order():
    plan = extract_beats(STORY)
    parts = sentences(STORY)
    assert len(plan.beats) == len(BEAT_NAMES) == 5
    for k, beat in enumerate(plan.beats):  # two sentences a part: beat k is one of them
        assert beat in parts[2 * k : 2 * k + 2]
    assert plan.beats[0] == parts[0]  # shares "lighthouse" and "lamp"-less words: the keeper line
    assert plan.premise in parts and plan.premise not in plan.beats
    assert beat_coverage(STORY, plan.beats).coverage == 1.0
    assert extract_beats("One. Two. Three. Four.") is None


def test_a_long_sentence_is_cut_to_a_beat_line():
    long = " ".join(["word"] * 60) + "."
    plan = extract_beats(" ".join([long] * 5))
    assert all(len(b.split()) == MAX_BEAT_WORDS + 1 and b.endswith(" …") for b in plan.beats)
    # Words without spaces between them (a link, unspaced CJK) are cut by characters.
    wide = extract_beats(" ".join(["x" * 700 + "."] * 5))
    assert all(len(b) == MAX_BEAT and b.endswith(" …") for b in wide.beats)
    assert validate_plan(wide) == wide


def test_beat_coverage_finds_beats_in_order_and_misses_absent_ones():
    beats = [
        "Mara keeps the lighthouse on an island.",
        "Jonah's ship vanishes in fog.",
        "Mara lights the lamp by hand in the storm.",
        "A dragon burns the castle.",
    ]
    c = beat_coverage(STORY, beats)
    assert c.found == (True, True, True, False)
    assert c.positions[:3] == (0, 2, 4) and c.positions[3] is None
    assert c.coverage == 0.75 and c.order == 1.0
    backwards = beat_coverage(STORY, [beats[2], beats[0], beats[1]])
    assert backwards.coverage == 1.0 and backwards.order == 0.5
    assert beat_coverage(STORY, []).order == 1.0 and np.isnan(beat_coverage(STORY, []).coverage)
    # The threshold is a share of the beat's content words.
    half = "lighthouse dragon"
    assert beat_coverage(STORY, [half]).found == (True,)
    assert beat_coverage(STORY, [half], found_at=0.51).found == (False,)


def test_a_beat_is_a_line_of_narration_when_its_part_has_one():
    """Dialogue, questions, fragments, headings and timestamps are central to their part here
    (they share its words), yet a plan is made of the part's narration."""
    narration = [
        "Mara kept the lamp of the old lighthouse.",
        "Mara rowed the lighthouse boat out to the wreck.",
        "Jonah climbed the lighthouse stairs to the lamp room.",
        "Mara found the lighthouse log under the lamp.",
        "Mara and Jonah lit the lighthouse lamp at dawn.",
    ]
    noise = [
        '"Mara, the lighthouse lamp, the lighthouse lamp!"',
        "Where was the lighthouse lamp, Mara, the lamp?",
        "12/09/2013 4:56 pm lighthouse lamp Mara.",
        "and the lighthouse lamp, Mara, the lamp...",
        "Log of the lighthouse lamp: www.example.com/mara/lamp.",
    ]
    story = " ".join(f"{bad} {good}" for bad, good in zip(noise, narration, strict=True))
    assert extract_beats(story).beats == narration
    # with no narration in it, a part still gives its most central sentence
    noisy = " ".join(noise)
    assert all(b in sentences(noisy) for b in extract_beats(noisy).beats)


def test_a_titles_period_ends_no_sentence():
    assert sentences("Dear Mr. Walters, I met Dr. Who at St. Paul. The end.") == [
        "Dear Mr. Walters, I met Dr. Who at St. Paul.",
        "The end.",
    ]
    assert sentences("It was Mr. big. Then Dr.") == ["It was Mr.", "big.", "Then Dr."]
    assert sentences('"Dr. Who is here," she said.') == ['"Dr. Who is here," she said.']
    # a line break ends a sentence whatever came before it
    assert sentences("He lived on Baker St.\nThe next day it rained.") == [
        "He lived on Baker St.",
        "The next day it rained.",
    ]


def test_a_trajectory_needs_exactly_min_sentences():
    """The boundary itself: one sentence short has no trajectory, the minimum has one."""
    from storygen.arcs import MIN_SENTENCES

    assert MIN_SENTENCES >= WINDOWS
    lines = [f"Sentence number {i} was happy and sad." for i in range(MIN_SENTENCES)]
    assert trajectory(" ".join(lines[:-1])) is None
    values = trajectory(" ".join(lines))
    assert values is not None and len(values) == WINDOWS
