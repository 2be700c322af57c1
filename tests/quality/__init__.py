"""Quality guards: tests that fail when a learned stage gets worse, checked against the mock's truth."""
