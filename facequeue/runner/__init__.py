"""Running the queue: the daemon (when, how many) and the pipeline (one person's stages)."""
