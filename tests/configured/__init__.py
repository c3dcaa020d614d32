"""Tools a test config file names by import path."""
