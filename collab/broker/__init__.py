"""Cross-instance transport: the Broker protocol and its memory and Redis implementations."""
