"""The push service: websocket fan-out of NATS events (`/ws`)."""
