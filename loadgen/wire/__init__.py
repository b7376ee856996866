"""One streamed request on a socket: the HTTP/1.1 pool (``http11``), chunked de-framing (``chunked``), kernel receive
stamps (``kernel_stamps``), reads -> token events (``stream``), token counts (``token_counts``) and the request
itself (``client``)."""
