"""Data: dataset sources, catalog files, the uint8 array cache, subsets and batch iteration."""
