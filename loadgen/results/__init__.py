"""The results folder: its directory and run.json (``folder``), summary.json built once (``summary``,
``summary_turns``), a killed run's summary rebuilt (``rebuild``), the senders' files merged by index (``merge``)."""
