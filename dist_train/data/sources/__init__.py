"""Input formats the packer reads, one module each."""
