"""Operators: pure compute over decoded samples, registered under their ModelArts names."""
