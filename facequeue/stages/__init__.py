"""What happens to a person's images, stage by stage: search, download, curate, sidecar, promote."""
