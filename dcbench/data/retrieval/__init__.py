"""Oxford5k / Paris6k (original and revisited ground truth) and their images."""
