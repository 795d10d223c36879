"""Model lifecycle: reading the repository, choosing versions, loading, swapping and unloading."""
