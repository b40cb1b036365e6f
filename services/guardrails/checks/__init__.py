"""One module per guardrail check; each returns a :class:`~.results.CheckResult`."""
