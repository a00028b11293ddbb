"""Recordings: the JSON codec, the writer, the reader, the replayer and compare, one job per module.

A recording is JSON lines (optionally gzipped): a header, then samples, statuses and verdicts as the store
received them. ``codec`` turns model values into JSON and back; nothing else knows the encoding.
"""
