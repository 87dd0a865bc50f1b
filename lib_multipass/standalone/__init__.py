"""`python -m lib_multipass`: the run, mask, parse and options commands, and the demo."""
