"""testbed.experiments"""
