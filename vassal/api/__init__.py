"""What apps import: the ``uwsgi`` module (and, in time, ``uwsgidecorators``) and the
shared state behind it (caches, locks, the spooler, mules), created before workers fork."""
