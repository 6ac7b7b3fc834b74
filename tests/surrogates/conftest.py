"""The trained-surrogate fixtures live in tests/_trained.py (shared with serving)."""
