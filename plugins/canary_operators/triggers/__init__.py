"""Triggers (deferrable waits). They live under plugins/ because the triggerer cannot import dags/."""
