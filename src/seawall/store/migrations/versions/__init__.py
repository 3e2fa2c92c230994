"""One module per schema revision, oldest first: `vNNNN_<what>.py` holds revision `NNNN`."""
