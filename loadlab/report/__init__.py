"""Reports over a finished (or partial) results folder. Reads results, never runs load."""
