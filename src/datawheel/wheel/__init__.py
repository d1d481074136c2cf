"""The wheel's orchestration: one turn (cycle), how turns are started (runner), init, retention."""
