"""What composes runs: ``compare``, ``sweep``, ``experiment`` (with ``experiment_plan``) and ``fit``; ``python -m
loadgen SUBCOMMAND`` runs them."""
