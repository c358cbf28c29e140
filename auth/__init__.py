"""Tokens, principals and project roles; pure apart from pyjwt."""
