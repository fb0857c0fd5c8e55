"""How people enter the queue: names and slugs, LLM and Wikidata sources."""
