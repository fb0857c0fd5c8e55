"""Running the queue: the daemon (when and how many) and the pipeline (what happens to one person)."""
