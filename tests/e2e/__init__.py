"""Whole commands end to end, as CI and people run them."""
