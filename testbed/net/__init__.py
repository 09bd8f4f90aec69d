"""testbed.net"""
