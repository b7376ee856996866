"""The senders of a run: one in this process (the default), N local processes (``--workers N``) or N Ray actors
(``--ray``), behind one interface (``shard.Fleet``) that the one run path (``loadgen.run.runner``) drives.

This package only sizes (``choose``), shards (``shard``), spawns (``shard``'s fleet of one, ``local``,
``ray_fleet`` / ``ray_actor``, ``clocksync``) and merges (``merge``); the run owns the results folder, the target,
the scraper, t0, the summary and the report. One process tops out near 100,000 token events/s; past that, or past
one host, the plan is shared out::

    the run (this process)                          senders (one per shard)
    plan_requests(cfg)  -> RequestPlan              sender k sends requests i with i % n == k
    target (simulator), scrape poller               ShardRun / run_shard(...): own event loop, own connections,
    t0: chosen once, after every sender is ready      own self-check, records to its own file/batches
    merge by index -> requests.jsonl, summary       ("done", outcome) / take() -> records + outcome

How t0 travels. Local workers (``local.LocalFleet``, spawned processes) share the host's CLOCK_MONOTONIC: the
driver picks t0 a few ms ahead (``RunClock.start``) and sends it over each worker's pipe; every sender's
dispatcher sleeps to the same absolute deadlines. Ray actors (``ray_fleet.RayFleet``) live on other hosts: each
measures its clock's offset to the driver's wall clock over several round trips (``clocksync``, Cristian's method,
keeping the round trip with the smallest RTT), the driver fixes the start as a wall-clock instant ~1 s ahead, and
each actor starts at that instant mapped onto its own monotonic clock; the offset's uncertainty is reported as the
schedule error it implies.

How records travel. A local worker writes its records to ``.senders/sender-K.jsonl`` in the results folder (a
writer thread, as in a one-process run); a Ray actor keeps them as JSON lines that the driver polls every 0.5 s
and appends to the same kind of file. At the end the files are merged by request index into ``requests.jsonl``
(``merge``) and the staging folder removed: the results folder looks as a one-process run's. A sender that dies
leaves ``worker_lost`` records for its requests without one. Each sender's self-check is judged on its own
(``loadgen.analysis.client_check``): the run is trustworthy only if every sender is.
"""
