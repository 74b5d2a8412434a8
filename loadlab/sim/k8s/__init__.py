"""Kubernetes objects as the API serves them: resource types, seeding, body shapes, validation.

May import nothing else from loadlab: every other part of the sim builds on these.
"""
