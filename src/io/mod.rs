//! Model files: safetensors weights plus metadata.
