"""The Mem0 side: the clients of the Platform API and the self-hosted server, their HTTP
sessions (the lean HTTP/1.1 client, aiohttp, httpx), the limit on calls in flight, and the
downstream's shared state (halted, backing off, the trial gate)."""
