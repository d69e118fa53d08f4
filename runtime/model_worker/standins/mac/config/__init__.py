"""Configuration handed to a BYOP model's builder."""
