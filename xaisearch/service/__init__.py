"""Running searches: storage URLs, the worker loop, heartbeats and retry, the launcher, artifacts, dashboard."""
