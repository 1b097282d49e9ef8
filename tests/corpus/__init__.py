"""A corpus of real uWSGI configs from public repositories (see README.md here), and the
tool that counts how many of them Imperium runs as written: ``python -m tests.corpus.count``."""
