"""The real-time bus: notifications after commit, fanned out between processes by Redis."""
