"""The docs service: Bokeh documents, their models, sharing, and the viewer pages."""
