"""The study: raw WritingPrompts to the comparison report in one command, with a manifest."""
