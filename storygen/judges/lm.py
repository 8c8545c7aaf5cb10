"""The embedded language model as a zero-shot judge: which answer does it find likeliest?

The story and a question go to SmolLM2-135M-Instruct (the embedded GGUF, on llama.cpp) in its
chat template; each answer is scored by the summed log-probability of its tokens after the
question. The story is computed once and every question and answer continues from it. A
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
    "pov": {
        "first person": "First person.",
        "second person": "Second person.",
        "third person": "Third person.",
    },
    "ending": {
        "happy": "Happy.",
        "sad": "Sad.",
        "bittersweet": "Bittersweet.",
        "twist": "With a twist.",
        "open": "Open.",
        "none": "None: it stops before the end.",
    },
    "arc": {
        **{arc: f"{shape[0].upper()}{shape[1:]}." for arc, shape in ARCS.items()},
        "unclear": "It stays the same.",
    },
}
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
        """The logits after the last token computed (valid until the next eval)."""
        import llama_cpp

        raw = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(raw, shape=(self.llm.n_vocab(),)).astype(np.float64)

    def _logprobs(self, continuation: list[int]) -> float:
        total = 0.0
        for t in continuation:
            logits = self._last_logits()
            m = logits.max()
            total += float(logits[t] - m - math.log(np.exp(logits - m).sum()))
            self.llm.eval([t])
        return total

    def choose(self, question: str, answers: list[str]) -> list[float]:
        """The log-probability of each answer to ``question`` about the story read last."""
        self.llm.n_tokens = self._story_len
        ask = self.llm.tokenize(
            f"\n\n{question}<|im_end|>\n<|im_start|>assistant\n".encode(),
            add_bos=False,
            special=True,
        )
        self.llm.eval(ask)
        at = self.llm.n_tokens
        out = []
        for answer in answers:
            self.llm.n_tokens = at
            out.append(self._logprobs(self._tokens(answer)))
        return out

    def classify(self, field: str, labels: list[str]) -> str:
        question, _ = QUESTIONS[field]
        texts = [ANSWERS.get(field, {}).get(label, f"{label.capitalize()}.") for label in labels]
        scores = self.choose(question, texts)
        return labels[int(np.argmax(scores))]

    def yes_no(self, kind: str, phrase: str, name: str = "") -> float:
        """log P(yes) - log P(no)."""
        yes, no = self.choose(PRESENCE[kind].format(phrase=phrase, name=name), ["Yes", "No"])
        return yes - no
