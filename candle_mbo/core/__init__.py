"""Where a task comes from, where it goes and how it is recorded: the dispatch loop, its sources, the journal
and the experiment store (see docs/ARCHITECTURE.md)."""
