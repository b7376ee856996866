"""What a run sends and when, decided before it starts: arrival offsets (``schedule``), the plan as a value
(``request_plan``), made from the configuration (``planner``; conversations: ``sessions``), and the run's one t0
(``clock``)."""
