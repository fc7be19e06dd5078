"""Bokeh's wire format and ColumnDataSource's rules, once for the two services that speak it.

docs keeps documents in Bokeh's JSON; data reads appends and patches written in it (and
Arrow) and answers views in it. Both use this package, so an ndarray, a non-finite number,
a map or a patch slice means the same in a document and in a data source:

- `wire`: the JSON encodings (numbers, bytes, ndarrays, maps), read and written.
- `rules`: what ColumnDataSource.stream and .patch accept (rollover, the columns a stream
  must name, patch pairs, indices and slices).

Both read untrusted input and raise the calling service's own 422 (`Wire(DocumentError)`,
`Wire(DataError)`), so a bad ndarray in a document is the document's error and in an append
the data's, with the same words.
"""
