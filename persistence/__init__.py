"""Stores for documents, projects, versions and notifications; knows nothing of sockets."""
