"""Runs: the run plan (what steps, and what each waits for), the local driver that executes it,
and what a run leaves behind: the manifest, lineage, reproduction, selection."""
