"""PyTorch utilities shared by training, metrics and tools: device resolution, statistics
collection across processes, module helpers, checkpoint persistence and custom ops."""
