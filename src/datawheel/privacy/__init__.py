"""Privacy: the PII detectors, the screen that applies the workspace policy, and the policy itself."""
