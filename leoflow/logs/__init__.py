"""Task logs: NDJSON lines per try, written by whoever runs the try and read by the API."""
