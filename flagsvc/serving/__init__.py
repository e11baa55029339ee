"""The HTTP front of `flagsvc serve`: an asyncio HTTP/1.1 server (h11) in each gunicorn worker. SDK streams are
coroutines, the Flask app runs on thread pools (one reserved for operators), and every connection is bounded in
time and in count (docs/serving.md)."""
