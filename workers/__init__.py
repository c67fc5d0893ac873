"""Celery workers: the app, the task runner, template jobs, progress and stop."""
