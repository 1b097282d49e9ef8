"""Logging beyond the process's own log stream (vassal.log): the request log line
(``log-format`` and uWSGI's default line) and the logger plugins a log master writes to."""
