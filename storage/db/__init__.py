"""Metadata DB: SQLAlchemy 2 models, engine/session factory, repositories, migrations."""
