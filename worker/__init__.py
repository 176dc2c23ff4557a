"""Dramatiq only: broker set-up, actors, the scheduler, the retry policy and sync requests."""
