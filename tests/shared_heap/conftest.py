# World, heap_path and the `world` fixture live in tests/conftest.py (unit tests
# elsewhere need a standalone heap too); the heap tests import them from here.
from tests.conftest import World, heap_path  # noqa: F401
