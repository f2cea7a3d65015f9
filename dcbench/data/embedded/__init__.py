"""The embedded sets dcbench builds from Fashion-MNIST (VOC-layout and Oxford-layout), their
builders and the digests that guard them."""
