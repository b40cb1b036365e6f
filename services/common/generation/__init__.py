"""Text generation behind one protocol: the local engine, a TGI server or an OpenAI server.

``base`` holds the types, ``factory.backend_from_settings`` picks the backend, and ``contract``
is the test suite every backend passes. Nothing here is imported eagerly: torch, peft and the
HTTP clients load only with the backend that needs them.
"""
