"""Running the queue: the daemon (when, how many) and the pipeline (what happens to one person)."""
