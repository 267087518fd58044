"""Reading the live file tree: metadata of entries, exclude rules. Reads, never writes."""
