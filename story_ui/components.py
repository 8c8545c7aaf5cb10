"""Gradio inputs whose values reach the handlers as sent, so that a value that is not a number
gets the handler's message naming the control, never a bare error from Gradio's conversion."""

from __future__ import annotations

import gradio as gr


class Slider(gr.Slider):
    """A slider checked by the handler: its range is SamplingConfig's own, and validation there
    names the control; Gradio's check would fail without a message on a non-number."""

    def preprocess(self, payload):
        return payload


class Number(gr.Number):
    """A number field that passes a value it cannot convert through to the handler."""

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (TypeError, ValueError, OverflowError):
            return payload
