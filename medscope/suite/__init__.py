"""ClinVideoSuite builder: adapters → question generation → filters → VCoT trajectories."""
