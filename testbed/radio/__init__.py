"""testbed.radio"""
