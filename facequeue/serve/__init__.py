"""`facequeue serve`: the gallery as a recognition API, metrics, and a live review UI."""
