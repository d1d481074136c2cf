"""The demo on scikit-learn's digits and the simulated user populations it (and the tests) drive."""
