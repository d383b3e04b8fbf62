import os

# Tests run with the development configuration (pytest-django still turns DEBUG off while testing).
os.environ.setdefault("DEBUG", "1")
