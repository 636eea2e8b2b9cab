"""Infrastructure: the only layer that talks to Redis (and holds the process-local caches in front of it)."""
