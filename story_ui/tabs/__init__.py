"""One module per tab of the app: its layout and wiring. The handlers they call live in
``story_ui.write``, ``story_ui.rate`` and ``story_ui.results``; the services behind them in
``story_ui.services``."""
