"""Custom operators: pure-PyTorch references plus accelerated CPU and CUDA implementations."""
