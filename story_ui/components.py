"""Gradio inputs whose values reach the handlers as sent, so that a value of the wrong type
gets the handler's message naming the control: never a bare error from Gradio's conversion,
and never a silent one (an API call's ``characters=123`` written about as "123", ``seed=1.5``
run as seed 2)."""

from __future__ import annotations

import gradio as gr


class Slider(gr.Slider):
    """A slider checked by the handler: its range is SamplingConfig's own, and validation there
    names the control; Gradio's check would fail without a message on a non-number."""

    def preprocess(self, payload):
        return payload


class Number(gr.Number):
    """A number field that passes a value it cannot convert, or could only by rounding, through
    to the handler."""

    def preprocess(self, payload):
        if self.precision == 0 and isinstance(payload, float) and not payload.is_integer():
            return payload  # 1.5 is not a seed: the handler says so, Gradio would round it
        try:
            return super().preprocess(payload)
        except (TypeError, ValueError, OverflowError):
            return payload


class Textbox(gr.Textbox):
    """A text field that passes what it is sent to the handler, which refuses what is not text
    (Gradio's own would turn a number or a dict into its text)."""

    def preprocess(self, payload):
        return payload
