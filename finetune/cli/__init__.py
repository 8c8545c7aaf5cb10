"""The ``python -m finetune`` verbs, one module each: ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). Heavy imports (torch, transformers) happen in ``run``, so
``--help`` is quick."""
