"""The Python API (:mod:`bptt_cli.api.commands`): ``analyze``, ``spectrum``, ``truncate``, ``sweep``,
``plot`` and their results (:mod:`bptt_cli.api.results`)."""
