"""Integration tests: the real local server, over HTTP, websockets and processes."""
