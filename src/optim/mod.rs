//! Optimisers with PyTorch update rules.
