"""collab: a real-time collaboration server for node graphs (Yjs over Socket.IO)."""

__version__ = "0.1.0"
