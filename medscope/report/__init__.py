"""Showing evidence to a person: contact sheets of timestamped frames and the HTML evidence report."""
