"""The web surface: teachers' linking pages, the admin API, health and metrics (a small FastAPI app)."""
