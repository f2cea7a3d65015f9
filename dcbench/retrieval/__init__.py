"""Instance retrieval (Oxford5k / Paris6k, DeepCluster Table 5): R-MAC descriptors and mAP."""
