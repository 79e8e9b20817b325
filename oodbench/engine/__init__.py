"""The engine: content-addressed cache, device and precision, extraction, planning and execution."""
