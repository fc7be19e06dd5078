"""An empty app for bench/live_session.py: `bokeh serve` needs an app to take sessions at
this path; the producer brings the document with `bokeh.client.push_session`."""
