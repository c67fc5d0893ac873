"""Object storage, manifests, dataset versions and the metadata DB."""
