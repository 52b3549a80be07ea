"""What an object's metadata is: the header wire format and reading HDF5 files."""
