//! Dataset readers, the embedded digits, and the batch loader.
