"""The server's composition: what `plotline serve` puts together from the four services.

- serve.py: `plotline serve` (every service, or one), settings from flags and the
  environment, the HTTP server (granian or uvicorn) and the internal port;
- embedded.py: the embedded mode's one ASGI app (every service under the URL prefix);
- natsproc.py: its private nats-server (credentials per service);
- applets.py: `--script` applets beside the server.

The `plotline` command itself (client/plotline/cli.py) only parses and hands over.
"""
