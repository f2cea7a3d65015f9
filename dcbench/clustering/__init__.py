"""Clustering for DeepCluster: PCA-whitening, k-means (faiss), PIC, samplers and metrics."""
