"""Serving: the embedded model server, probes of the endpoints a run uses, and the store's dashboard."""
