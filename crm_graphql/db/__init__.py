"""Database engine, sessions and the embedded development servers."""
