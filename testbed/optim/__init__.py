"""Transceiver design for the over-the-air all-reduce, model assignment (SSCA), and the
latency/energy model.

Main entry points: `design_transceiver`, `aircomp_mse`, `ssca_assign`, `per_token_latency`.
"""
from testbed.optim.mse import aircomp_mse
from testbed.optim.transceiver import METHODS, TransceiverDesign, design_transceiver

__all__ = ["aircomp_mse", "design_transceiver", "METHODS", "TransceiverDesign"]
