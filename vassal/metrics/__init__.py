"""The metrics subsystem (``enable-metrics``): uWSGI's named 64-bit numbers and their pushers.

``table`` holds the metrics (uWSGI's built-in ones, the custom ``metric`` ones, thresholds)
with their values in shared memory created before the fork; ``collectors`` computes the
values the master collects; ``service`` is the master duty that collects them once a second,
keeps ``metrics-dir`` up to date and applies thresholds; ``pushers`` and ``carbon`` send the
values (or the stats JSON) elsewhere without ever holding the master loop; ``prometheus``
renders the instance for a Prometheus scrape. ``vassal.api.metrics`` offers the table to
apps (``uwsgi.metric_*``).
"""
