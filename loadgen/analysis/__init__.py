"""Numbers from records: distributions, every latency defined once (``metrics.INTERVALS``), the catalogue of run-level
metrics and labels, accuracy, llama.cpp's engine timings, the client's self-check and its verdict."""
