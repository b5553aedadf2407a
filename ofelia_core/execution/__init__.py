"""Executing runs: the run context handed to job type runners, the executor, the dispatcher."""
