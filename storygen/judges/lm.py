"""The embedded language model as a zero-shot judge: which answer does it find likeliest?

The story and a question go to SmolLM2-135M-Instruct (the embedded GGUF, on llama.cpp) in its
chat template; each answer is scored by the log-probability of its first token right after the
question (the answers of a question start with different tokens, as multiple-choice benchmarks
score letters). The story is computed once; every question continues from it. A
candidate the judges are compared against (``python -m finetune judges``), not a default: a
135M model reads stories poorly, and the report says how poorly.
"""

from __future__ import annotations

import math

import numpy as np

from storygen.request import ARCS

MAX_STORY_TOKENS = 1100
"""A longer story keeps its first 300 and last 800 tokens (the ending matters most)."""

QUESTIONS = {
    "genre": ("What is the genre of this story?", None),
    "tone": ("What is the tone of this story?", None),
    "ending": (
        "How does this story end: happy, sad, bittersweet, with a twist, open, or does the text "
        "stop before any ending (none)?",
        None,
    ),
    "pov": ("Is this story told in the first, second or third person?", None),
    "arc": (
        "How does the main character's fortune change from the start to the end of the story?",
        None,
    ),
}
ANSWERS = {
    # Lower case: the tokenizer splits a capital off. Each answer's first token is its own.
    "genre": {"fairy tale": "a fairy tale", "drama": "realistic drama"},
    "pov": {p: p for p in ("first person", "second person", "third person")},
    "ending": {
        "happy": "happy",
        "sad": "sad",
        "bittersweet": "bittersweet",
        "twist": "with a twist",
        "open": "open",
        "none": "none: it stops before the end",
    },
    "arc": {**{arc: arc for arc in ARCS}, "unclear": "unclear"},
}


def labels_of(field: str) -> list[str]:
    """The answers a story field is chosen among (training and runtime alike)."""
    from storygen.request import ENDINGS, GENRES, POVS, TONES

    return {
        "genre": list(GENRES),
        "tone": list(TONES),
        "ending": [*ENDINGS, "none"],
        "pov": list(POVS),
        "arc": [*ARCS, "unclear"],
    }[field]


PRESENCE = {
    "place": "Does any scene of this story take place in {phrase}?",
    "era": "Is this story set in {phrase}?",
    "character": "Is there a character called {phrase} in this story?",
    "trait": "Is {name} {phrase} in this story?",
    "event": "Does this happen in the story: {phrase}?",
}


class LMJudge:
    """Scores answers to questions about one story at a time."""

    def __init__(self):
        from llama_cpp import Llama

        from storygen.embedded import embedded_model, gguf_path

        self.llm = Llama(
            model_path=str(gguf_path(embedded_model("embedded"))),
            n_ctx=2048,
            n_threads=2,
            verbose=False,
        )
        self._story_len = 0

    def _tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def read(self, story: str) -> None:
        """Compute the story once: every later question continues from it."""
        ids = self._tokens(story)
        if len(ids) > MAX_STORY_TOKENS:
            ids = ids[:300] + self._tokens(" ... ") + ids[-800:]
        head = self.llm.tokenize(b"<|im_start|>user\n", add_bos=False, special=True)
        self.llm.reset()
        self.llm.eval(head + ids)
        self._story_len = self.llm.n_tokens

    def _last_logits(self) -> np.ndarray:
        """The logits after the last token computed (copied: valid until the next eval)."""
        import llama_cpp

        raw = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(raw, shape=(self.llm.n_vocab(),)).astype(np.float64)

    def choose(self, question: str, answers: list[str]) -> list[float]:
        """The log-probability of each answer's first token right after ``question`` about the
        story read last (the answers must start with different tokens)."""
        self.llm.n_tokens = self._story_len
        ask = self.llm.tokenize(
            f"\n\n{question}<|im_end|>\n<|im_start|>assistant\n".encode(),
            add_bos=False,
            special=True,
        )
        self.llm.eval(ask)
        logits = self._last_logits()
        m = logits.max()
        logz = m + math.log(np.exp(logits - m).sum())
        firsts = [self._tokens(a)[0] for a in answers]
        if len(set(firsts)) != len(firsts):
            raise ValueError(f"answers share a first token: {answers}")
        return [float(logits[t] - logz) for t in firsts]

    def classify(self, field: str, labels: list[str] | None = None) -> str:
        question, _ = QUESTIONS[field]
        labels = labels or labels_of(field)
        texts = [ANSWERS.get(field, {}).get(label, label) for label in labels]
        scores = self.choose(question, texts)
        return labels[int(np.argmax(scores))]

    def yes_no(self, kind: str, phrase: str, name: str = "") -> float:
        """log P(yes) - log P(no)."""
        yes, no = self.choose(PRESENCE[kind].format(phrase=phrase, name=name), ["yes", "no"])
        return yes - no
