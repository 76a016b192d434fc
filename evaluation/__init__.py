"""Evaluation of the streaming detector: labelled scenarios, their metrics, and the NAB scorer."""
