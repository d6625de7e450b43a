//! The training loop, evaluation, metrics and run folder.
