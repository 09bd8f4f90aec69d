"""Calibration of timing, CFO, phase, channel and gain: estimators, procedures, persistence."""
