"""The ModelArts-compatible REST API (FastAPI): app factory, one router per resource, error envelope."""
