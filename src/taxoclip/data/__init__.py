"""Building TreeOfLife-style training sets: sources, taxonomy, dedup, splits, webdataset shards."""
