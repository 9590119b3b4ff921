"""The sync engine: a pure core (plan, match) and the run that applies it."""
